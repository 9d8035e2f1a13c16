package supervisor

import (
	"context"
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

// supervisorOnHost is a supervisor whose commands go through the helper
// serving a channel on this machine, as on docker.
func supervisorOnHost(t *testing.T) (*hostRunner, *Supervisor) {
	t.Helper()
	h := newHostRunner(t)
	path := New(h, Options{}).HelperPath(context.Background(), "box")
	if path == "" {
		t.Skip("no helper for this machine")
	}
	cmd := exec.Command(path, "serve")
	cmd.Dir, cmd.Env = h.dir, []string{"PATH=" + h.path, "TMPDIR=" + h.tmp, "HOME=" + h.dir}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := NewChannel(out, in)
	t.Cleanup(func() { ch.Close(); cmd.Wait() })
	return h, New(channelRunner{h, ch}, Options{})
}

// supervisorPid is the supervisor's pid in a process's state.
func supervisorPid(t *testing.T, h *hostRunner, proc string) int {
	t.Helper()
	f := strings.Fields(h.state(t, proc))
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("state %q", f)
	}
	return pid
}

// Through the channel one supervisor runs one command after another (no
// program starts per command), and a kill still finds only what its
// process started: a late signal or a removal of a process the supervisor
// ran before leaves the one it runs now alone, and a kill of that one ends
// even the child it detached.
func TestSpareSupervisorRunsOneProcessAfterAnother(t *testing.T) {
	ctx := context.Background()
	h, s := supervisorOnHost(t)
	// A spare marks a run released, then tells serve it is free: a start
	// in between finds none free and starts a supervisor of its own. So
	// quick processes run until one lands on a supervisor that ran one
	// before.
	ranOn := map[int]string{} // a supervisor's pid: the last process it ran
	released := func(proc string) {
		t.Helper()
		name := filepath.Join(h.tmp, procDir, proc, ".released")
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(name); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the supervisor did not release process %s", proc)
			}
		}
	}
	for i := 0; ; i++ {
		p, err := s.StartProcess(ctx, "box", providers.ProcessSpec{Command: "true"})
		if err != nil {
			t.Fatal(err)
		}
		if in, err := s.WaitProcess(ctx, "box", p.ID, 10*time.Second); err != nil || in.Running {
			t.Fatalf("WaitProcess: %+v %v", in, err)
		}
		released(p.ID)
		sup := supervisorPid(t, h, p.ID)
		_, reused := ranOn[sup]
		ranOn[sup] = p.ID
		if reused {
			break
		}
		if i == 20 {
			t.Fatal("20 processes in a row each had a supervisor of its own: one is started per command")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// startDetaching starts a process that detaches a child, on a
	// supervisor that ran another before (not on a spare made meanwhile
	// that has run nothing yet), and returns it, its supervisor, the
	// process that supervisor ran before, and the child's pid.
	startDetaching := func() (proc providers.ProcessInfo, sup int, before string, child int) {
		t.Helper()
		for i := 0; ; i++ {
			os.Remove(filepath.Join(h.dir, "child"))
			var err error
			proc, err = s.StartProcess(ctx, "box", providers.ProcessSpec{Command: "setsid sleep 60 & echo $! >child; wait"})
			if err != nil {
				t.Fatal(err)
			}
			sup = supervisorPid(t, h, proc.ID)
			if id, ok := ranOn[sup]; ok {
				before = id
				ranOn[sup] = proc.ID
				break
			}
			if i == 5 {
				t.Fatal("5 processes in a row ran on supervisors that had run nothing before")
			}
			s.SignalProcess(ctx, "box", proc.ID, "KILL")
			s.WaitProcess(ctx, "box", proc.ID, 10*time.Second)
			released(proc.ID)
			ranOn[sup] = proc.ID
		}
		for deadline := time.Now().Add(10 * time.Second); child == 0; time.Sleep(5 * time.Millisecond) {
			b, _ := os.ReadFile(filepath.Join(h.dir, "child"))
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			if time.Now().After(deadline) {
				t.Fatal("the command did not start its child")
			}
		}
		return proc, sup, before, child
	}
	gone := func(child int, after string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(child, 0) == nil; time.Sleep(10 * time.Millisecond) {
			if st, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); strings.Contains(string(st), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the detached child %d outlived %s", child, after)
			}
		}
	}
	second, sup, first, child := startDetaching()

	// A kill of the first process arriving late, then its removal.
	syscall.Kill(sup, syscall.SIGUSR2)
	if err := s.RemoveProcess(ctx, "box", first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if in, err := s.WaitProcess(ctx, "box", second.ID, 0); err != nil || !in.Running {
		t.Fatalf("after a signal and a removal meant for the first process, the second: %+v %v", in, err)
	}

	if err := s.SignalProcess(ctx, "box", second.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	if in, err := s.WaitProcess(ctx, "box", second.ID, 10*time.Second); err != nil || in.Running || in.ExitCode != 137 {
		t.Fatalf("after its kill: %+v %v", in, err)
	}
	gone(child, "the kill")

	// And the next command still runs, with its output.
	var out strings.Builder
	res, err := s.RunProcess(ctx, "box", providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "echo third"}, Wait: 10 * time.Second, KeepAfter: 1000, Stdout: &out})
	if err != nil || res.ExitCode != 0 || out.String() != "third\n" {
		t.Fatalf("RunProcess after: %+v %q %v", res, out.String(), err)
	}

	// A removal whose supervisor is too slow to act while the removal
	// waits (stopped here; a loaded machine does the same) ends the
	// process once the supervisor runs again, though the removal took the
	// process's directory, and its .kill, with it.
	fourth, sup, _, child := startDetaching()
	syscall.Kill(sup, syscall.SIGSTOP)
	err = s.RemoveProcess(ctx, "box", fourth.ID)
	syscall.Kill(sup, syscall.SIGCONT)
	if err != nil {
		t.Fatal(err)
	}
	gone(child, "its removal")
}
