package providertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// escape is a way for a command to start a child that leaves its process
// group, its session or its environment. child is the command the escapee
// runs; %s in start is replaced by it, quoted.
type escape struct {
	name  string
	start string
}

// escapes lists the ways out the suite tries. The marker case clears every
// variable with SANDBOX in its name, which covers the marker any driver
// uses to find a command's children.
func (s *procSuite) escapes(t *testing.T, id string) []escape {
	setpgrp := escape{"setpgrp", `perl -e 'setpgrp(0, 0); exec @ARGV' /bin/sh -c %s &`}
	if strings.TrimSpace(s.exec(t, id, "command -v perl >/dev/null && echo yes")) != "yes" {
		// Without perl, a new session also leaves the group.
		setpgrp = escape{"new session without setsid", `/bin/sh -c 'set -m; /bin/sh -c "$1" & wait' sh %s &`}
	}
	return []escape{
		{"setsid", `setsid /bin/sh -c %s &`},
		setpgrp,
		{"setsid without the marker", `setsid env $(env | sed -n 's/^\([A-Za-z0-9_]*SANDBOX[A-Za-z0-9_]*\)=.*/-u \1/p') /bin/sh -c %s &`},
		{"setsid with a cleared environment", `setsid env -i PATH=/usr/local/bin:/usr/bin:/bin /bin/sh -c %s &`},
		{"double fork", `( (/bin/sh -c %s &) & )`},
	}
}

// exec runs a shell command in the sandbox and returns its stdout.
func (s *procSuite) exec(t *testing.T, id, cmd string) string {
	t.Helper()
	var out LockedBuffer
	if _, err := s.p.Exec(procCtx(t), id, providers.ExecRequest{Command: cmd, Stdout: &out}); err != nil {
		t.Fatalf("Exec(%q): %v", cmd, err)
	}
	return out.String()
}

// escapee is the command an escape starts: it records its PID, then
// touches a file every 100ms while it lives.
func escapee(pidFile, touch string) string {
	return fmt.Sprintf(`echo $$ >%s.tmp && mv %s.tmp %s; while :; do touch %s 2>/dev/null; sleep 0.1; done`,
		providers.ShellQuote(pidFile), providers.ShellQuote(pidFile), providers.ShellQuote(pidFile), providers.ShellQuote(touch))
}

// waitStarted waits until the escapee has written its PID.
func (s *procSuite) waitStarted(t *testing.T, id, pidFile string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		if strings.TrimSpace(s.exec(t, id, "test -s "+providers.ShellQuote(pidFile)+" && echo yes")) == "yes" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the escapee never wrote %s", pidFile)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitGone fails unless the escapee's PID is gone (or a zombie) soon.
func (s *procSuite) waitGone(t *testing.T, id, pidFile, after string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		out := strings.TrimSpace(s.exec(t, id, aliveScript(pidFile)))
		if out == "dead" {
			return
		}
		if time.Now().After(deadline) {
			// What a reader needs to tell why: every process's pid, name,
			// state, parent, group and session.
			t.Fatalf("the child the command started (PID in %s) is still %s after %s; %s", pidFile, out, after, s.processTable(t, id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testEscapes checks that a timeout, a cancelled run, a KILL and the
// sandbox's destruction end everything a command started, however it
// detached.
func (s *procSuite) testEscapes(t *testing.T) {
	id := s.sandbox(t)
	for _, e := range s.escapes(t, id) {
		t.Run(e.name, func(t *testing.T) {
			command := func(stop string) (cmd, pidFile string) {
				pidFile = "providertest-escape-" + stop + "-" + randHex(4)
				return strings.ReplaceAll(e.start, "%s", providers.ShellQuote(escapee(pidFile, pidFile+".touched"))) + "\nsleep 300", pidFile
			}
			t.Run("Timeout", func(t *testing.T) {
				cmd, pidFile := command("timeout")
				in := s.start(t, id, providers.ProcessSpec{Command: cmd, Timeout: 5 * time.Second})
				s.waitStarted(t, id, pidFile)
				if got := s.wait(t, id, in.ID); !got.TimedOut {
					t.Fatalf("the command was not ended by its timeout: %+v", got)
				}
				s.waitGone(t, id, pidFile, "the timeout")
			})
			t.Run("Cancel", func(t *testing.T) {
				runner, ok := s.p.(providers.ProcessRunner)
				if !ok {
					t.Skip("driver does not implement ProcessRunner")
				}
				cmd, pidFile := command("cancel")
				ctx, cancel := context.WithCancel(procCtx(t))
				defer cancel()
				done := make(chan error, 1)
				go func() {
					_, err := runner.RunProcess(ctx, id, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: cmd}, Wait: time.Minute})
					done <- err
				}()
				s.waitStarted(t, id, pidFile)
				cancel()
				if err := <-done; !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled run: %v", err)
				}
				s.waitGone(t, id, pidFile, "the cancel")
			})
			t.Run("Kill", func(t *testing.T) {
				cmd, pidFile := command("kill")
				in := s.start(t, id, providers.ProcessSpec{Command: cmd})
				s.waitStarted(t, id, pidFile)
				if err := s.pp.SignalProcess(procCtx(t), id, in.ID, "KILL"); err != nil {
					// What a reader needs to tell why: the process as its
					// record has it, its output, and every process.
					now, ierr := s.pp.WaitProcess(procCtx(t), id, in.ID, 0)
					out, oerr := s.pp.ReadOutput(procCtx(t), id, in.ID, providers.OutputRequest{Stream: providers.Stderr, Limit: 4 << 10})
					t.Fatalf("KILL: %v\nthe process: %+v %v\nits stderr: %q %v\n%s", err, now, ierr, out.Data, oerr, s.processTable(t, id))
				}
				s.waitGone(t, id, pidFile, "KILL")
				if err := s.pp.RemoveProcess(procCtx(t), id, in.ID); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("Destroy", func(t *testing.T) {
				// The sandbox is gone afterwards, so the escapee is watched
				// through a file it would touch: one on this machine, which
				// a sandbox sharing it (a fake, local) reaches and a
				// container or VM does not.
				other := s.sandbox(t)
				touched := filepath.Join(t.TempDir(), "touched")
				pidFile := "providertest-escape-destroy-" + randHex(4)
				cmd := strings.ReplaceAll(e.start, "%s", providers.ShellQuote(escapee(pidFile, touched))) + "\nsleep 300"
				s.start(t, other, providers.ProcessSpec{Command: cmd})
				s.waitStarted(t, other, pidFile)
				if err := s.p.Destroy(procCtx(t), other); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
				os.Remove(touched)
				time.Sleep(2 * time.Second)
				if _, err := os.Stat(touched); err == nil {
					t.Fatalf("a child the command started still runs after the sandbox was destroyed: it touched %s", touched)
				}
			})
		})
	}
}

// processTable lists every process in the sandbox: pid, name, state,
// parent, group and session.
func (s *procSuite) processTable(t *testing.T, id string) string {
	return "processes (pid name state ppid pgid sid):\n" +
		s.exec(t, id, `for p in /proc/[0-9]*/stat; do read -r l <"$p" 2>/dev/null && echo "$l" | cut -d' ' -f1-6; done`)
}
