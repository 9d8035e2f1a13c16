package jail

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const secret = "jail-test-secret-5f3a9c"

// hostProcess starts a host process the sandbox must neither see nor kill.
func hostProcess(t *testing.T, seconds string) *exec.Cmd {
	t.Helper()
	c := exec.Command("sleep", seconds)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// Each attack is what a hostile command would try; every one must fail:
// the command exits non-zero (after `|| exit 0` style fallbacks are
// impossible: the check is on the output too) and the secret never shows.
func TestAttacksFail(t *testing.T) {
	t.Setenv("MCP_SANDBOX_TEST_KEY", secret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	// Places outside the sandbox holding something worth stealing.
	other := t.TempDir() // another sandbox's directory
	os.WriteFile(filepath.Join(other, "notes"), []byte(secret), 0o644)
	state := shortTempDir(t) // the server's state directory
	os.WriteFile(filepath.Join(state, "meta.json"), []byte(secret), 0o644)
	home, _ := os.UserHomeDir()
	victim := hostProcess(t, "3999")

	j := startJail(t, Options{SocketDir: state})
	if got := j.Isolation().Level; got != LevelNamespaces {
		t.Fatalf("isolation %q, want namespaces on this machine", got)
	}
	self := os.Getpid()
	for _, tc := range []struct{ name, cmd string }{
		{"every environ", `cat /proc/*/environ /proc/*/task/*/environ`},
		{"parent environ", `grep -a MCP_SANDBOX_TEST_KEY /proc/$PPID/environ`},
		{"grandparent environ", `grep -a MCP_SANDBOX_TEST_KEY /proc/$(awk '/^PPid/{print $2}' /proc/$PPID/status)/environ`},
		{"PID 1 environ", `cat /proc/1/environ`},
		{"server environ by host pid", fmt.Sprintf(`cat /proc/%d/environ`, self)},
		{"shadow", `cat /etc/shadow`},
		{"gshadow", `cat /etc/gshadow`},
		{"sudoers", `ls /etc/sudoers /etc/ssh`},
		{"server home", fmt.Sprintf(`ls -A %s`, home)},
		{"root home", `ls -A /root`},
		{"state dir", fmt.Sprintf(`cat %s/meta.json`, state)},
		{"other sandbox", fmt.Sprintf(`cat %s/notes`, other)},
		{"escape by parent dirs", `cat /workspace/../../../../` + other + `/notes`},
		{"write /usr", `touch /usr/pwned`},
		{"write /etc", `echo x > /etc/passwd`},
		{"write root", `touch /pwned`},
		{"write /proc/sys", `echo 1 > /proc/sys/kernel/sysrq`},
		{"remount /usr rw", `mount -o remount,rw /usr`},
		{"unmount workspace", `umount /workspace`},
		{"host process listed", `ps -eo args | grep -q '[s]leep 3999' && exit 0 || exit 1`},
		{"host pid killed", fmt.Sprintf(`kill -9 %d`, victim.Process.Pid)},
		{"server killed", fmt.Sprintf(`kill -9 %d`, self)},
		{"inherited descriptors", `for fd in 3 4 5 6 7 8 9; do [ -e /dev/fd/$fd ] && exit 0; done; exit 1`},
		{"PID 1 memory", `head -c 16 /proc/1/mem`},
		{"PID 1 fds", `for f in /proc/1/fd/*; do readlink $f && exit 0; cat $f </dev/null && exit 0; done; exit 1`},
		{"PID 1 root", `ls /proc/1/root/ && cat /proc/1/maps`},
		{"server fds by host pid", fmt.Sprintf(`ls /proc/%d/fd`, self)},
		{"host loopback", fmt.Sprintf(`perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr=>"127.0.0.1:%d", Timeout=>2) or exit 7'`, port)},
		{"outside network", `perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr=>"1.1.1.1:53", Timeout=>2) or exit 7'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := sh(t, j, tc.cmd)
			if code == 0 {
				t.Errorf("%s: exit 0, want failure (stdout %q stderr %q)", tc.cmd, out, errOut)
			}
			if strings.Contains(out+errOut, secret) {
				t.Errorf("%s: the secret leaked: %q", tc.cmd, out+errOut)
			}
		})
	}
	if victim.ProcessState != nil || syscall.Kill(victim.Process.Pid, 0) != nil {
		t.Error("the host process did not survive the sandbox")
	}
	for _, p := range []string{"/usr/pwned", "/pwned"} {
		if _, err := os.Stat(p); err == nil {
			os.Remove(p)
			t.Errorf("%s was created on the host", p)
		}
	}
	select {
	case <-accepted:
		t.Error("the sandbox connected to the host's loopback")
	default:
	}
	// Signalling every pid the sandbox can see leaves its PID 1 (and so the
	// sandbox) alive: the command's own pid namespace cannot address it.
	sh(t, j, `for p in $(ls /proc | grep '^[0-9]'); do kill -9 $p; done; kill -9 1`)
	if code, out, _ := sh(t, j, "echo alive"); code != 0 || out != "alive\n" || syscall.Kill(j.Pid(), 0) != nil {
		t.Errorf("the jail did not survive its commands signalling everything: %d %q", code, out)
	}
	// The sandbox sees only its own processes: the jail's PID 1, a spare
	// reaper, and the command (its reaper, its shell, ls, grep).
	_, out, _ := sh(t, j, `ls /proc | grep -c '^[0-9]'`)
	if n, _ := strconv.Atoi(strings.TrimSpace(out)); n == 0 || n > 6 {
		t.Errorf("the sandbox sees %s processes, want its own few", out)
	}
}

// findHostProcess returns the host pids whose command line contains s.
func findHostProcess(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) && !strings.Contains(string(st), ") Z ") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitGone(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(findHostProcess(marker)) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("processes %v (%q) survived", findHostProcess(marker), marker)
}

func TestDetachedProcessesEnd(t *testing.T) {
	t.Run("with the command on timeout", func(t *testing.T) {
		j := startJail(t, Options{})
		start := time.Now()
		code, err := j.Run(context.Background(), Cmd{
			Command: `setsid nohup sleep 4101 >/dev/null 2>&1 & (sh -c 'sleep 4102 &' &); sleep 4103`,
			Timeout: 300 * time.Millisecond,
		})
		if err != ErrTimeout || code != 137 {
			t.Fatalf("Run = %d, %v; want 137, ErrTimeout", code, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the kill took %v", d)
		}
		for _, m := range []string{"sleep 4101", "sleep 4102", "sleep 4103"} {
			waitGone(t, m)
		}
	})
	t.Run("with the jail on Close", func(t *testing.T) {
		j := startJail(t, Options{})
		if code, _, e := sh(t, j, `setsid nohup sleep 4201 >/dev/null 2>&1 & (sh -c 'sleep 4202 </dev/null >/dev/null 2>&1 &' &)`); code != 0 {
			t.Fatalf("exit %d: %s", code, e)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		waitGone(t, "sleep 4201")
		waitGone(t, "sleep 4202")
		if syscall.Kill(j.Pid(), 0) == nil && len(findHostProcess(initArg)) > 0 {
			t.Error("PID 1 is still alive")
		}
	})
	t.Run("with the jail on cancel", func(t *testing.T) {
		j := startJail(t, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := j.Run(ctx, Cmd{Command: `setsid sleep 4301 & sleep 4302`})
		if err != context.DeadlineExceeded {
			t.Fatalf("Run: %v, want the context's error", err)
		}
		waitGone(t, "sleep 4301")
	})
}

func TestNetworkOption(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	connect := fmt.Sprintf(`perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(PeerAddr=>"127.0.0.1:%d", Timeout=>5) or exit 7; print <$s>'`, port)
	for _, tc := range []struct {
		network bool
		want    int
	}{{false, 7}, {true, 0}} {
		t.Run(fmt.Sprint("network=", tc.network), func(t *testing.T) {
			j := startJail(t, Options{Network: tc.network})
			if j.Isolation().Network != tc.network {
				t.Errorf("Isolation().Network = %v", j.Isolation().Network)
			}
			code, out, errOut := sh(t, j, connect)
			if code != tc.want {
				t.Fatalf("connect exit %d (%q %q), want %d", code, out, errOut, tc.want)
			}
			// Loopback works inside either way.
			code, _, errOut = sh(t, j, `perl -MIO::Socket::INET -e '$l = IO::Socket::INET->new(Listen=>1, LocalAddr=>"127.0.0.1:0") or die; $c = IO::Socket::INET->new(PeerAddr=>"127.0.0.1:".$l->sockport) or die "$!"'`)
			if code != 0 {
				t.Errorf("loopback inside: %d %s", code, errOut)
			}
		})
	}
}

// /tmp and /dev/shm live in memory: a command cannot fill the machine's
// memory through them.
func TestInMemoryFileSystemsAreBounded(t *testing.T) {
	j := startJail(t, Options{})
	for dir, limit := range map[string]string{"/tmp": tmpSize, "/dev/shm": shmSize} {
		code, out, _ := sh(t, j, "df -k "+dir+" | awk 'NR==2{print $2}'")
		if code != 0 {
			t.Fatalf("df %s: exit %d", dir, code)
		}
		want := map[string]string{"1g": "1048576", "256m": "262144"}[limit]
		if strings.TrimSpace(out) != want {
			t.Errorf("%s holds %s KiB, want %s", dir, strings.TrimSpace(out), want)
		}
	}
}
