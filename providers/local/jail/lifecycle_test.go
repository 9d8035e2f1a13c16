package jail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAttachAfterRestart(t *testing.T) {
	j := startJail(t, Options{Limits: Limits{Processes: 100}})
	if code, _, e := sh(t, j, "echo kept > note; setsid sleep 4401 >/dev/null 2>&1 &"); code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	// A restarted server knows only the socket's path.
	a, err := Attach(j.Socket())
	if err != nil {
		t.Fatal(err)
	}
	if a.Pid() != j.Pid() || a.Isolation() != j.Isolation() {
		t.Errorf("attached pid %d %+v, started %d %+v", a.Pid(), a.Isolation(), j.Pid(), j.Isolation())
	}
	if code, out, _ := sh(t, a, "cat note"); code != 0 || out != "kept\n" {
		t.Errorf("through the attached jail: %d %q", code, out)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "sleep 4401")
	select {
	case <-j.waited:
	case <-time.After(5 * time.Second):
		t.Error("PID 1 still runs after Close through Attach")
	}
	for _, cg := range j.cfg.Cgroups {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s left behind", cg)
		}
	}
	if _, err := Attach(j.Socket()); err == nil {
		t.Error("Attach to an ended jail succeeded")
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{SocketDir: shortTempDir(t)}, "Options.Dir and Options.SocketDir are required"},
		{"missing dir", Options{Dir: "/nonexistent/x", SocketDir: shortTempDir(t)}, "must be an existing directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Start(ctx, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Start: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	j := startJail(t, Options{})
	for _, tc := range []struct {
		name string
		cmd  Cmd
		want string
	}{
		{"nothing to run", Cmd{}, "set Cmd.Command or Cmd.Argv"},
		{"missing program", Cmd{Argv: []string{"no-such-program"}}, "executable file not found"},
		{"missing cwd", Cmd{Command: "true", Cwd: "/nonexistent"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := j.Run(ctx, tc.cmd); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// The jail serves on after bad requests.
	if code, out, _ := sh(t, j, "echo fine"); code != 0 || out != "fine\n" {
		t.Errorf("after bad requests: %d %q", code, out)
	}
	if _, err := Attach(filepath.Join(shortTempDir(t), SocketName)); err == nil || !strings.Contains(err.Error(), "is the sandbox still running?") {
		t.Errorf("Attach to nothing: %v", err)
	}
}

// Where user namespaces are forbidden, Landlock alone still confines files,
// ptrace and signals.
func TestLandlockOnly(t *testing.T) {
	if landlockABI() == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the kernel has no Landlock; CI needs it")
		}
		t.Skip("the kernel has no Landlock")
	}
	t.Setenv("MCP_SANDBOX_TEST_KEY", secret)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes"), []byte(secret), 0o644)
	// Commands run on the host's tree: their uid must reach the directory.
	parent := shortTempDir(t)
	os.Chmod(parent, 0o711)
	dir := filepath.Join(parent, "ws")
	os.Mkdir(dir, 0o700)
	victim := hostProcess(t, "3998")
	j := startJail(t, Options{Dir: dir, Level: LevelLandlock})
	if iso := j.Isolation(); iso.Level != LevelLandlock || iso.Landlock == 0 {
		t.Fatalf("isolation %+v, want landlock", iso)
	}
	if code, _, e := sh(t, j, "echo hi > f && cat f >/dev/null && ls /usr/bin >/dev/null && cat /etc/passwd >/dev/null"); code != 0 {
		t.Fatalf("ordinary work in the sandbox: %d %s", code, e)
	}
	for _, tc := range []struct{ name, cmd string }{
		{"server environ", fmt.Sprintf("cat /proc/%d/environ", os.Getpid())},
		{"PID 1 environ", fmt.Sprintf("cat /proc/%d/environ", j.Pid())},
		{"server memory", fmt.Sprintf("head -c 16 /proc/%d/mem", os.Getpid())},
		{"shadow", "cat /etc/shadow"},
		{"other sandbox", "cat " + other + "/notes"},
		{"write outside", "touch " + other + "/pwned"},
		{"write /tmp", "touch /tmp/jail-landlock-pwned"},
		{"host pid killed", fmt.Sprintf("kill -9 %d", victim.Process.Pid)},
		{"server stopped", fmt.Sprintf("kill -STOP %d", os.Getpid())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := sh(t, j, tc.cmd)
			if code == 0 || strings.Contains(out+errOut, secret) {
				t.Errorf("%s: exit %d, stdout %q stderr %q; want a failure", tc.cmd, code, out, errOut)
			}
		})
	}
	if syscall.Kill(victim.Process.Pid, 0) != nil {
		t.Error("the host process did not survive")
	}
	if code, _, _ := sh(t, j, "setsid nohup sleep 4501 >/dev/null 2>&1 &"); code != 0 {
		t.Fatal("could not start a detached process")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "sleep 4501")
}

func TestControlSocketIsPrivate(t *testing.T) {
	sockDir := shortTempDir(t)
	j := startJail(t, Options{SocketDir: sockDir})
	for _, p := range []string{sockDir, j.Socket()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others could reach the sandbox's PID 1", p, fi.Mode().Perm())
		}
	}
	// And the sandbox cannot see it.
	if code, _, _ := sh(t, j, "ls "+sockDir); code == 0 {
		t.Errorf("the sandbox lists %s", sockDir)
	}
}
