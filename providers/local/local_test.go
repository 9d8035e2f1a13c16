package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
)

func newSandbox(t *testing.T) (*Provider, providers.Sandbox) {
	t.Helper()
	p, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := p.Create(context.Background(), providers.CreateOptions{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	return p, sb
}

// hostDir is the sandbox directory as the host sees it (commands see it at
// sb.Workdir).
func hostDir(p *Provider, sb providers.Sandbox) string { return p.root(sb.ID) }

// hostPid is the host's pid of a sandbox process known by its pid in the
// jail (what $$ says there), or 0 when there is none.
func hostPid(t *testing.T, p *Provider, id string, pid int) int {
	t.Helper()
	m, err := p.load(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Isolation.Level != jail.LevelNamespaces {
		return pid
	}
	j, err := p.jailOf(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", j.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if l, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); l != ns {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(pid) {
				host, _ := strconv.Atoi(f[1])
				return host
			}
		}
	}
	return 0
}

func run(t *testing.T, p *Provider, id string, req providers.ExecRequest) (providers.ExecResult, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	req.Stdout, req.Stderr = &out, &errb
	res, err := p.Exec(context.Background(), id, req)
	if err != nil {
		t.Fatalf("exec %q: %v", req.Command, err)
	}
	return res, out.String(), errb.String()
}

func TestServerEnvironmentDoesNotLeak(t *testing.T) {
	t.Setenv("E2B_API_KEY", "secret-value")
	p, sb := newSandbox(t)
	_, out, _ := run(t, p, sb.ID, providers.ExecRequest{Command: "env", Env: map[string]string{"ASKED": "yes"}})
	if strings.Contains(out, "secret-value") {
		t.Fatalf("server secret visible in sandbox env:\n%s", out)
	}
	if !strings.Contains(out, "ASKED=yes") || !strings.Contains(out, "HOME="+sb.Workdir+"\n") {
		t.Fatalf("expected the requested env and HOME=%s, got:\n%s", sb.Workdir, out)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	p, sb := newSandbox(t)
	pidFile := filepath.Join(hostDir(p, sb), "child.pid")
	start := time.Now()
	res, _, _ := run(t, p, sb.ID, providers.ExecRequest{
		Command: "sleep 1000 & echo $! > child.pid; sleep 1000",
		Timeout: 300 * time.Millisecond,
	})
	if !res.TimedOut || time.Since(start) > 5*time.Second {
		t.Fatalf("want a timeout well under 5s, got %+v after %v", res, time.Since(start))
	}
	assertGone(t, p, sb.ID, pidFile)
}

func TestCancelKillsProcessGroup(t *testing.T) {
	p, sb := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "sleep 1000 & echo $! > child.pid; wait"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	assertGone(t, p, sb.ID, filepath.Join(hostDir(p, sb), "child.pid"))
}

// assertGone checks that the sandbox process whose jail pid is in pidFile
// (on the host) is gone.
func assertGone(t *testing.T, p *Provider, id, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err != nil {
		t.Fatal(err)
	}
	if pid = hostPid(t, p, id, pid); pid == 0 {
		return // no process in the jail has it
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("background child %d survived", pid)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

func TestTrailingAmpersandDoesNotHang(t *testing.T) {
	p, sb := newSandbox(t)
	start := time.Now()
	res, out, _ := run(t, p, sb.ID, providers.ExecRequest{Command: "sleep 1000 & echo started"})
	if res.ExitCode != 0 || !strings.Contains(out, "started") {
		t.Fatalf("got %+v %q", res, out)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("command ending in & took %v", d)
	}
	// Destroy ends what the sandbox left running.
	if err := p.Destroy(context.Background(), sb.ID); err != nil {
		t.Fatal(err)
	}
}

func TestFilesStayInsideTheSandbox(t *testing.T) {
	p, sb := newSandbox(t)
	ctx := context.Background()
	if err := os.Symlink("/etc", filepath.Join(hostDir(p, sb), "etc-link")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(filepath.Dir(hostDir(p, sb))), "escape.txt")
	for _, path := range []string{"../escape.txt", "../../escape.txt", "a/../../escape.txt", "/etc/passwd", outside, "etc-link/passwd", "etc-link/new.txt"} {
		if _, _, err := p.ReadFile(ctx, sb.ID, path); !errors.Is(err, providers.ErrInvalidArgument) && !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("read %q: want a refusal, got %v", path, err)
		}
		if err := p.WriteFile(ctx, sb.ID, path, []byte("x"), 0); !errors.Is(err, providers.ErrInvalidArgument) {
			t.Errorf("write %q: want invalid argument, got %v", path, err)
		}
	}
	if _, err := os.Stat(outside); err == nil {
		t.Fatal("a file was written outside the sandbox")
	}
	if _, err := os.Stat("/etc/new.txt"); err == nil {
		t.Fatal("a file was written through the symlink")
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	p, sb := newSandbox(t)
	ctx := context.Background()
	data := []byte{0, 1, 2, 0xff, 0xfe, '\n'}
	if err := p.WriteFile(ctx, sb.ID, "deep/nested/bin.dat", data, 0); err != nil {
		t.Fatal(err)
	}
	rc, fi, err := p.ReadFile(ctx, sb.ID, filepath.Join(sb.Workdir, "deep/nested/bin.dat"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) || fi.Size != int64(len(data)) {
		t.Fatalf("round trip: got %v (%d bytes)", got, fi.Size)
	}
	ents, truncated, err := p.ListFiles(ctx, sb.ID, ".", 5, 100)
	if err != nil || truncated || len(ents) != 3 {
		t.Fatalf("list: %v %v %+v", err, truncated, ents)
	}
}

func TestUnknownAndMalformedIDs(t *testing.T) {
	p, _ := newSandbox(t)
	for _, id := range []string{"../../etc", "", "00000000-0000-0000-0000-000000000000"} {
		if err := p.Destroy(context.Background(), id); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("destroy %q: want not found, got %v", id, err)
		}
	}
}

// A sandbox whose PID 1 is gone (killed, or the machine restarted) gets a
// new one on its next command, its files intact; a fresh driver (a
// restarted server) reaches a live one through its socket.
func TestSandboxOutlivesItsJail(t *testing.T) {
	p, sb := newSandbox(t)
	if err := p.WriteFile(context.Background(), sb.ID, "kept.txt", []byte("kept\n"), 0); err != nil {
		t.Fatal(err)
	}
	j := sandboxJail(t, p, sb.ID)
	m, err := p.load(sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := New(filepath.Dir(p.dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, out, _ := run(t, fresh, sb.ID, providers.ExecRequest{Command: "cat kept.txt; echo $$ > /tmp/mark"}); out != "kept\n" {
		t.Fatalf("a fresh driver read %q", out)
	}
	if fj, _ := fresh.jailOf(context.Background(), m); fj == nil || fj.Pid() != j.Pid() {
		t.Fatalf("the fresh driver did not reach the live jail (PID 1 %d)", j.Pid())
	}
	syscall.Kill(j.Pid(), syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(j.Pid(), 0) == nil && !isZombie(j.Pid()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("PID 1 did not die")
		}
	}
	fresh2, err := New(filepath.Dir(p.dir))
	if err != nil {
		t.Fatal(err)
	}
	res, out, errOut := run(t, fresh2, sb.ID, providers.ExecRequest{Command: "cat kept.txt; ls /tmp"})
	if res.ExitCode != 0 || out != "kept\n" {
		t.Fatalf("after PID 1 died: exit %d, %q %q; want the file, and a fresh /tmp", res.ExitCode, out, errOut)
	}
	if err := fresh2.Destroy(context.Background(), sb.ID); err != nil {
		t.Fatal(err)
	}
}

// A run whose jail's PID 1 dies under it ends with an error that says its
// exit status was lost, not with -1 posing as an exit code.
func TestRunWhosePID1DiesSaysTheExitIsLost(t *testing.T) {
	p, sb := newSandbox(t)
	j := sandboxJail(t, p, sb.ID)
	type ran struct {
		res providers.RunResult
		err error
	}
	done := make(chan ran, 1)
	var out providertest.LockedBuffer
	go func() {
		res, err := p.RunProcess(context.Background(), sb.ID, providers.RunRequest{
			ProcessSpec: providers.ProcessSpec{Command: "echo started; sleep 30"}, Stdout: &out, Wait: time.Minute})
		done <- ran{res, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "started"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the command did not start")
		}
	}
	syscall.Kill(j.Pid(), syscall.SIGKILL)
	select {
	case r := <-done:
		if r.err == nil || !strings.Contains(r.err.Error(), "exit status was lost") {
			t.Fatalf("after PID 1 died: %+v, %v; want an error saying the exit status was lost", r.res, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the run did not end when its PID 1 died")
	}
}

// sandboxJail is the running jail of sandbox id.
func sandboxJail(t *testing.T, p *Provider, id string) *jail.Jail {
	t.Helper()
	m, err := p.load(id)
	if err != nil {
		t.Fatal(err)
	}
	j, err := p.jailOf(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
