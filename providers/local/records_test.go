package local

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// spoilers are what could happen to a process's record (run in its
// directory) and to the sandbox's metadata (run one level up): a jailed
// sandbox cannot reach them, but a sandbox with isolation none, or a
// careless operator, can.
var spoilers = []struct {
	name, script string
}{
	{"state.json is a FIFO", "mv state.json x && mkfifo state.json"},
	{"state.json links to a device", "rm state.json && ln -s /dev/zero state.json"},
	{"state.json is huge", "truncate -s 1G state.json"},
	{"spec.json is a FIFO", "mv spec.json x && mkfifo spec.json"},
	{"the output log is a FIFO", "mkfifo spoil.fifo && mv -f spoil.fifo stdout.0000000000000000"},
	{"the record is a FIFO", "cd .. && mv 1 x && mkfifo 1"},
	{"meta.json is a FIFO", "cd ../.. && mv meta.json x && mkfifo meta.json"},
	{"the process table is a FIFO", "cd ../.. && mv procs x && mkfifo procs"},
}

// Spoiled records make no call hang, and the process they described still
// dies with its sandbox: the kill needs no record and no environment
// marker (the command clears its environment).
func TestSpoiledRecordsBlockNothingAndSaveNoProcess(t *testing.T) {
	for _, tc := range spoilers {
		t.Run(tc.name, func(t *testing.T) {
			p, sb := newSandbox(t)
			in := start(t, p, sb.ID, providers.ProcessSpec{Command: "echo started; echo $$ > pid; exec env -i sleep 1000"})
			pid := hostPid(t, p, sb.ID, waitPid(t, filepath.Join(hostDir(p, sb), "pid")))
			spoil(t, p.procDir(sb.ID, in.ID), tc.script)
			// Reads of a record answer at once; calls that start or kill
			// processes get the time that takes on a loaded machine.
			read, work := time.Second, 5*time.Second
			calls := []struct {
				name  string
				bound time.Duration
				call  func(ctx context.Context) error
			}{
				{"ListProcesses", read, func(ctx context.Context) error { _, err := p.ListProcesses(ctx, sb.ID); return err }},
				{"WaitProcess", read, func(ctx context.Context) error { _, err := p.WaitProcess(ctx, sb.ID, in.ID, 0); return err }},
				{"ReadOutput", read, func(ctx context.Context) error {
					_, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 100})
					return err
				}},
				{"StartProcess", work, func(ctx context.Context) error {
					_, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "true"})
					return err
				}},
				{"Destroy", work, func(ctx context.Context) error { return p.Destroy(ctx, sb.ID) }},
				{"Close", read, func(ctx context.Context) error { return p.Close() }},
			}
			for _, c := range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				begin := time.Now()
				err := c.call(ctx)
				cancel()
				if d := time.Since(begin); d > c.bound {
					t.Errorf("%s took %v; want an answer within %v", c.name, d, c.bound)
				}
				// An error must say what is wrong; a success is fine.
				if err != nil && !errors.Is(err, providers.ErrNotFound) && !strings.Contains(err.Error(), "damaged") && !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("%s: unclear error %v", c.name, err)
				}
			}
			waitGone(t, pid)
			if _, err := os.Stat(p.base(sb.ID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the sandbox directory is still there after Destroy: %v", err)
			}
		})
	}
}

// A damaged record still lets a KILL through, found by its supervisor.
func TestKillReachesAProcessWithADamagedRecord(t *testing.T) {
	p, sb := newSandbox(t)
	in := start(t, p, sb.ID, providers.ProcessSpec{Command: "echo $$ > pid; exec env -i sleep 1000"})
	pid := hostPid(t, p, sb.ID, waitPid(t, filepath.Join(hostDir(p, sb), "pid")))
	spoil(t, p.procDir(sb.ID, in.ID), "mv state.json x && mkfifo state.json")
	_, err := p.WaitProcess(context.Background(), sb.ID, in.ID, 0)
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "FIFO") {
		t.Errorf("WaitProcess on a damaged record: %v; want an error saying it is damaged, and how", err)
	}
	if err := p.SignalProcess(context.Background(), sb.ID, in.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// spoil runs a spoiler's script on the host in a process's record.
func spoil(t *testing.T, dir, script string) {
	t.Helper()
	c := exec.Command("/bin/sh", "-c", script)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("spoiling: %v: %s", err, out)
	}
}

func waitPid(t *testing.T, name string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(name); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", name)
	return 0
}

// waitGone waits for pid to be dead (or a zombie no one reaped yet).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || err == nil && strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("process %d outlived its sandbox", pid)
}
