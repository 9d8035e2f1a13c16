package local

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func start(t *testing.T, p *Provider, id string, spec providers.ProcessSpec) providers.ProcessInfo {
	t.Helper()
	in, err := p.StartProcess(context.Background(), id, spec)
	if err != nil {
		t.Fatalf("start %q: %v", spec.Command, err)
	}
	return in
}

func wait(t *testing.T, p *Provider, id, proc string) providers.ProcessInfo {
	t.Helper()
	in, err := p.WaitProcess(context.Background(), id, proc, 10*time.Second)
	if err != nil || in.Running {
		t.Fatalf("wait %s: %+v %v", proc, in, err)
	}
	return in
}

func readAll(t *testing.T, p *Provider, id, proc string, stream providers.Stream) string {
	t.Helper()
	var b bytes.Buffer
	for off := int64(0); ; {
		out, err := p.ReadOutput(context.Background(), id, proc, providers.OutputRequest{Stream: stream, Offset: off, Limit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out.Data)
		off = out.Offset + int64(len(out.Data))
		if len(out.Data) == 0 {
			return b.String()
		}
	}
}

func TestProcessRunsToExitAndKeepsOutput(t *testing.T) {
	p, sb := newSandbox(t)
	in := start(t, p, sb.ID, providers.ProcessSpec{Command: "echo out; echo err >&2; pwd; exit 7", Env: map[string]string{"X": "y"}})
	if in.ID != "1" || in.Command == "" {
		t.Fatalf("info: %+v", in)
	}
	in = wait(t, p, sb.ID, in.ID)
	if in.ExitCode != 7 || in.StdoutBytes != int64(len("out\n"+sb.Workdir+"\n")) || in.StderrBytes != 4 || in.EndedAt.IsZero() {
		t.Fatalf("exit: %+v", in)
	}
	if got := readAll(t, p, sb.ID, in.ID, providers.Stdout); got != "out\n"+sb.Workdir+"\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := readAll(t, p, sb.ID, in.ID, providers.Stderr); got != "err\n" {
		t.Fatalf("stderr %q", got)
	}
	// Numbers are never reused, even after removal.
	if err := p.RemoveProcess(context.Background(), sb.ID, in.ID); err != nil {
		t.Fatal(err)
	}
	if next := start(t, p, sb.ID, providers.ProcessSpec{Command: "true"}); next.ID != "2" {
		t.Fatalf("second process got ID %s", next.ID)
	}
	if _, err := p.WaitProcess(context.Background(), sb.ID, "1", 0); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("removed process: %v", err)
	}
}

func TestDestroyEndsProcesses(t *testing.T) {
	p, sb := newSandbox(t)
	in := start(t, p, sb.ID, providers.ProcessSpec{Command: "echo $$ > sh.pid; exec sleep 1000"})
	waitFile(t, filepath.Join(hostDir(p, sb), "sh.pid"))
	b, _ := os.ReadFile(filepath.Join(hostDir(p, sb), "sh.pid"))
	pidFile := filepath.Join(t.TempDir(), "pid")
	jailPid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	os.WriteFile(pidFile, []byte(strconv.Itoa(hostPid(t, p, sb.ID, jailPid))), 0o600)
	var st procState
	if err := readJSON(filepath.Join(p.procDir(sb.ID, in.ID), "state.json"), &st); err != nil {
		t.Fatal(err)
	}
	supFile := filepath.Join(t.TempDir(), "supervisor")
	os.WriteFile(supFile, []byte(strconv.Itoa(st.Supervisor)+"\n"), 0o600)
	if err := p.Destroy(context.Background(), sb.ID); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pidFile, supFile} {
		b, _ := os.ReadFile(f)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		waitGone(t, pid)
	}
}

// The log keeps the head and the latest tail; reads say what was skipped.
func TestOutputLimitKeepsHeadAndTail(t *testing.T) {
	p, sb := newSandbox(t)
	in := start(t, p, sb.ID, providers.ProcessSpec{Command: "seq 1 100000", OutputLimit: 4000})
	in = wait(t, p, sb.ID, in.ID)
	full := seq(100000)
	if in.StdoutBytes != int64(len(full)) {
		t.Fatalf("total %d, want %d", in.StdoutBytes, len(full))
	}
	ctx := context.Background()
	head, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 1 << 20})
	if err != nil || head.Offset != 0 || string(head.Data) != full[:2000] {
		t.Fatalf("head: %d bytes at %d, %v", len(head.Data), head.Offset, err)
	}
	rest, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Offset: 2000, Limit: 1 << 20})
	if err != nil || rest.Skipped == 0 || rest.Offset != 2000+rest.Skipped || string(rest.Data) != full[rest.Offset:] {
		t.Fatalf("tail: skipped %d, %d bytes at %d, %v", rest.Skipped, len(rest.Data), rest.Offset, err)
	}
	if kept := len(rest.Data); kept < 1000 || kept > 2000 {
		t.Fatalf("tail kept %d bytes, want between 1000 and 2000", kept)
	}
	if _, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Offset: in.StdoutBytes + 1, Limit: 1}); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Fatalf("read past end: %v", err)
	}
}

func TestProcessArgumentsAreChecked(t *testing.T) {
	p, sb := newSandbox(t)
	ctx := context.Background()
	for _, proc := range []string{"", "../1", "1/..", "abc", "99"} {
		if _, err := p.WaitProcess(ctx, sb.ID, proc, 0); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("process %q: want not found, got %v", proc, err)
		}
	}
	if _, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "true", Cwd: "nope"}); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("bad cwd: %v", err)
	}
	in := start(t, p, sb.ID, providers.ProcessSpec{Command: "true"})
	if err := p.WriteStdin(ctx, sb.ID, in.ID, []byte("x"), false); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("stdin to a process without open stdin: %v", err)
	}
	if _, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: "both", Limit: 1}); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("bad stream: %v", err)
	}
}

func waitFile(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(name); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func seq(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

// Finished processes are forgotten beyond keepFinished, oldest first;
// running ones never are.
func TestFinishedProcessesArePruned(t *testing.T) {
	p, sb := newSandbox(t)
	running := start(t, p, sb.ID, providers.ProcessSpec{Command: "sleep 1000"})
	var last providers.ProcessInfo
	for i := 0; i < keepFinished+5; i++ {
		last = start(t, p, sb.ID, providers.ProcessSpec{Command: "true"})
		wait(t, p, sb.ID, last.ID)
	}
	start(t, p, sb.ID, providers.ProcessSpec{Command: "true"}) // prunes
	list, err := p.ListProcesses(context.Background(), sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) > keepFinished+2 || list[0].ID != running.ID || !list[0].Running {
		t.Fatalf("%d processes kept, first %+v", len(list), list[0])
	}
	if _, err := p.WaitProcess(context.Background(), sb.ID, "2", 0); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("the oldest finished process was kept: %v", err)
	}
	if _, err := p.WaitProcess(context.Background(), sb.ID, last.ID, 0); err != nil {
		t.Fatalf("the newest finished process was pruned: %v", err)
	}
}

// Nothing of the server's or the supervisor's leaks into a command: its
// only pipes are its stdout and stderr (and stdin when fed).
func TestCommandsInheritNoDescriptors(t *testing.T) {
	p, sb := newSandbox(t)
	const list = `exec find /proc/self/fd/ -mindepth 1 -printf "%f %l\\n"`
	check := func(how, out string) {
		t.Helper()
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			fd, target, _ := strings.Cut(line, " ")
			if strings.HasPrefix(target, "pipe:") && fd != "1" && fd != "2" {
				t.Errorf("%s: the command holds a pipe on fd %s:\n%s", how, fd, out)
			}
		}
	}
	in := wait(t, p, sb.ID, start(t, p, sb.ID, providers.ProcessSpec{Command: list}).ID)
	check("StartProcess", readAll(t, p, sb.ID, in.ID, providers.Stdout))
	var out bytes.Buffer
	if _, err := p.RunProcess(context.Background(), sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: list}, Wait: 10 * time.Second, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	check("RunProcess", out.String())
}
