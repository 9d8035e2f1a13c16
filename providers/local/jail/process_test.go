package jail

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startProc starts a command whose output goes to a file, as a supervisor
// outside the jail would.
func startProc(t *testing.T, j *Jail, command string) (*Process, *os.File) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p, err := j.Start(Cmd{Command: command, Stdout: out, Stderr: out})
	if err != nil {
		t.Fatalf("Start(%q): %v", command, err)
	}
	return p, out
}

// waitCode waits at most 10 s for a started command's exit code.
func waitCode(t *testing.T, p *Process) int {
	t.Helper()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { c, err := p.Wait(); done <- result{c, err} }()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Wait: %v", r.err)
		}
		return r.code
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end within 10 s")
		return 0
	}
}

// A command is the init of its own pid namespace, which the kernel spares
// from signals it has no handler for; signals must still act as they do
// outside a jail: TERM ends `sleep`, a trap catches it, STOP and CONT work.
func TestSignalsActAsOutsideAJail(t *testing.T) {
	for _, level := range []Level{LevelNamespaces, LevelLandlock} {
		t.Run(string(level), func(t *testing.T) {
			if level == LevelLandlock && landlockABI() == 0 {
				t.Skip("no Landlock on this kernel")
			}
			// Without namespaces commands run on the host's tree: their
			// uid must reach the directory.
			parent := shortTempDir(t)
			os.Chmod(parent, 0o711)
			dir := filepath.Join(parent, "ws")
			os.Mkdir(dir, 0o700)
			j := startJail(t, Options{Dir: dir, Level: level})

			p, _ := startProc(t, j, "exec sleep 100")
			time.Sleep(50 * time.Millisecond)
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := waitCode(t, p); code != 128+int(syscall.SIGTERM) {
				t.Errorf("sleep after TERM: exit %d, want %d", code, 128+int(syscall.SIGTERM))
			}

			p, out := startProc(t, j, `trap 'echo caught; exit 7' TERM; echo ready; while :; do sleep 0.05; done`)
			waitFor(t, out.Name(), "ready")
			// By pid, from a connection of its own, as a server that
			// restarted (or a supervisor's peer) would.
			if err := j.Signal(p.Pid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := waitCode(t, p); code != 7 {
				t.Errorf("trapped TERM: exit %d, want 7", code)
			}
			if b, _ := os.ReadFile(out.Name()); !strings.Contains(string(b), "caught") {
				t.Errorf("the trap did not run: output %q", b)
			}

			p, out = startProc(t, j, `i=0; while :; do i=$((i+1)); echo $i > count; sleep 0.02; done`)
			time.Sleep(100 * time.Millisecond)
			p.Signal(syscall.SIGSTOP)
			time.Sleep(50 * time.Millisecond)
			count := func() string {
				_, c, _ := sh(t, j, "cat count")
				return c
			}
			before := count()
			time.Sleep(150 * time.Millisecond)
			if after := count(); after != before {
				t.Errorf("a stopped command went on counting: %q then %q", before, after)
			}
			p.Signal(syscall.SIGCONT)
			time.Sleep(150 * time.Millisecond)
			if after := count(); after == before {
				t.Errorf("a continued command did not count on (still %q)", after)
			}
			p.Kill()
			if code := waitCode(t, p); code != 128+int(syscall.SIGKILL) {
				t.Errorf("after Kill: exit %d, want %d", code, 128+int(syscall.SIGKILL))
			}
			if err := j.Signal(p.Pid(), syscall.SIGTERM); err == nil {
				t.Error("signalling a command that has exited: no error")
			}
		})
	}
}

// waitFor waits until a file contains want.
func waitFor(t *testing.T, name, want string) {
	t.Helper()
	for range 500 {
		if b, _ := os.ReadFile(name); strings.Contains(string(b), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(name)
	t.Fatalf("%s never contained %q (has %q)", name, want, b)
}

// A state directory deeper than a Unix socket address allows still works.
func TestLongSocketPath(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	j := startJail(t, Options{SocketDir: deep})
	if code, out, _ := sh(t, j, "echo hi"); code != 0 || out != "hi\n" {
		t.Fatalf("got %d %q", code, out)
	}
	a, err := Attach(j.Socket())
	if err != nil {
		t.Fatalf("Attach through a long path: %v", err)
	}
	if a.Pid() != j.Pid() {
		t.Errorf("Attach found pid %d, want %d", a.Pid(), j.Pid())
	}
}

// Commands of one jail share its pid namespace, as on any machine: $$ and
// $! mean the same in every command, what a command leaves in the
// background goes on after it (and a later command can stop it), and a
// command that kills itself says so.
func TestCommandsShareTheJailsProcesses(t *testing.T) {
	j := startJail(t, Options{})
	if code, out, _ := sh(t, j, `sleep 1000 & echo $! > bg.pid; echo started`); code != 0 || out != "started\n" {
		t.Fatalf("got %d %q", code, out)
	}
	if code, out, _ := sh(t, j, `pid=$(cat bg.pid); grep -q sleep /proc/$pid/cmdline && kill $pid && echo stopped`); code != 0 || out != "stopped\n" {
		t.Errorf("the background child of an earlier command: %d %q, want it found by its pid and stopped", code, out)
	}
	if code, _, _ := sh(t, j, `kill -9 $$`); code != 128+int(syscall.SIGKILL) {
		t.Errorf("kill -9 $$: exit %d, want %d", code, 128+int(syscall.SIGKILL))
	}
	if code, out, _ := sh(t, j, `echo $$ > self.pid; cat /proc/$(cat self.pid)/cmdline | tr '\0' ' '`); code != 0 || !strings.Contains(out, "echo $$") {
		t.Errorf("$$ names another process in /proc: %d %q", code, out)
	}
}

// Killing a command ends everything it started while it ran, however it
// detached: a new session, a double fork, a cleared environment.
func TestKillEndsEverythingTheCommandStarted(t *testing.T) {
	j := startJail(t, Options{})
	p, out := startProc(t, j, `setsid sh -c 'echo $$ > a.pid; exec sleep 1000' &
( (env -i /bin/sh -c 'echo $$ > b.pid; exec sleep 1000' &) & )
while [ ! -s a.pid ] || [ ! -s b.pid ]; do sleep 0.01; done; echo ready; sleep 1000`)
	waitFor(t, out.Name(), "ready")
	p.Kill()
	if code := waitCode(t, p); code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit %d after Kill, want %d", code, 128+int(syscall.SIGKILL))
	}
	for _, f := range []string{"a.pid", "b.pid"} {
		code, got, _ := sh(t, j, `pid=$(cat `+f+`) && if [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; then echo alive; else echo dead; fi`)
		if code != 0 || strings.TrimSpace(got) != "dead" {
			t.Errorf("the child in %s is %q after the command was killed", f, got)
		}
	}
}

// A command handed to another owner runs on after its starter lets go,
// and its new owner gets its exit; one that exited first is said to have.
func TestHandoffPassesTheCommandOn(t *testing.T) {
	j := startJail(t, Options{})
	p, out := startProc(t, j, "echo one; sleep 0.5; echo two; exit 4")
	waitFor(t, out.Name(), "one")
	waiting := make(chan error, 1)
	go func() { _, err := p.Wait(); waiting <- err }()
	time.Sleep(50 * time.Millisecond) // the Wait is reading
	f, exited, err := p.Handoff()
	if err != nil || exited || f == nil {
		t.Fatalf("Handoff: %v %v %v", f, exited, err)
	}
	if err := <-waiting; err != ErrHandedOff {
		t.Fatalf("the Wait in progress returned %v, want ErrHandedOff", err)
	}
	q, err := Resume(f, "resumed")
	if err != nil {
		t.Fatal(err)
	}
	if code := waitCode(t, q); code != 4 {
		t.Errorf("exit %d after the handoff, want 4", code)
	}
	if b, _ := os.ReadFile(out.Name()); string(b) != "one\ntwo\n" {
		t.Errorf("output %q: the command did not run on", b)
	}

	p, _ = startProc(t, j, "exit 6")
	if code := waitCode(t, p); code != 6 {
		t.Fatalf("exit %d", code)
	}
	if f, exited, err := p.Handoff(); f != nil || !exited || err != nil {
		t.Errorf("Handoff after the exit: %v %v %v, want exited", f, exited, err)
	}
}
