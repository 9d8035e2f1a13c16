package jail

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The embedded reaper is what its source builds to (go generate).
func TestEmbeddedReaperIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("rebuilds the reaper")
	}
	want, err := os.ReadFile("reaperbin/go-version")
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(want)); v != runtime.Version() {
		t.Skipf("the embedded reaper was built by %s, this is %s: builds differ across versions", v, runtime.Version())
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("no reaper is built for %s", runtime.GOARCH)
	}
	dir := t.TempDir()
	gen := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "github.com/mcp-sandbox/mcp-sandbox/providers/internal/genstatic", "-pkg", "./internal/reaper", "-o", dir, "-arch", runtime.GOARCH)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run genstatic: %v\n%s", err, out)
	}
	name := "linux-" + runtime.GOARCH + ".gz"
	built, _ := os.ReadFile(filepath.Join(dir, name))
	embedded, _ := os.ReadFile(filepath.Join("reaperbin", name))
	if len(built) == 0 || !bytes.Equal(built, embedded) {
		t.Fatalf("reaperbin/%s is stale (%d bytes embedded, %d built): run go generate ./providers/local/jail", name, len(embedded), len(built))
	}
}

// Commands run under a spare reaper, started ahead; one that leaves
// nothing running hands its reaper on to the next command. A spare that
// is busy, dead or tampered with is never waited for or used: the command
// gets a new reaper. Killing a command run by the spare ends everything it
// started.
func TestSpareReaper(t *testing.T) {
	dir := t.TempDir()
	j := startJail(t, Options{Dir: dir})
	// A command's parent is its reaper.
	reaperOf := func(command string) (string, string) {
		t.Helper()
		code, out, e := sh(t, j, "echo $PPID; "+command)
		if code != 0 {
			t.Fatalf("%q: exit %d, %s", command, code, e)
		}
		first, rest, _ := strings.Cut(out, "\n")
		return first, rest
	}
	// The server knows a command by its own pid, not by its reaper's,
	// which serves later commands: a signal for one that ended reaches
	// no other.
	first, firstOut := startProc(t, j, "echo $$")
	if code := waitCode(t, first); code != 0 {
		t.Fatalf("echo $$: exit %d", code)
	}
	if b, _ := os.ReadFile(firstOut.Name()); strings.TrimSpace(string(b)) != strconv.Itoa(first.Pid()) {
		t.Errorf("the command's pid is %q, Pid() says %d", b, first.Pid())
	}
	later, _ := startProc(t, j, "sleep 1000")
	if err := j.Signal(first.Pid(), syscall.SIGKILL); err == nil {
		t.Errorf("signalling command %d, which has exited, reached something", first.Pid())
	}
	later.Kill()
	if code := waitCode(t, later); code != 128+int(syscall.SIGKILL) {
		t.Errorf("the command after: exit %d, want %d (it was killed by another's signal?)", code, 128+int(syscall.SIGKILL))
	}

	reaperOf("true") // it may have come before the spare was up
	spare, _ := reaperOf("true")
	if again, _ := reaperOf("true"); again != spare {
		t.Fatalf("reaper %s, then %s: a command that left nothing running did not hand its reaper on", spare, again)
	}

	p, out := startProc(t, j, `setsid sh -c 'echo $$ > a.pid; exec sleep 1000' &
( (env -i /bin/sh -c 'echo $$ > b.pid; exec sleep 1000' &) & )
while [ ! -s a.pid ] || [ ! -s b.pid ]; do sleep 0.01; done; echo ready
while [ ! -s victim ]; do sleep 0.01; done; kill -9 "$(cat victim)" && echo killed; sleep 1000`)
	waitFor(t, out.Name(), "ready")
	if code, got, _ := sh(t, j, "ps -o ppid= -p "+strconv.Itoa(p.Pid())); code != 0 || strings.TrimSpace(got) != spare {
		t.Errorf("the command went to reaper %q, not the spare %s", strings.TrimSpace(got), spare)
	}

	// The spare is busy: the next command gets a reaper of its own, which
	// then becomes the spare.
	other, _ := reaperOf("true")
	if other == spare {
		t.Fatalf("reaper %s serves two commands at once", other)
	}
	// A sandbox process kills the idle spare: the next command does not
	// notice.
	if err := os.WriteFile(filepath.Join(dir, "victim"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out.Name(), "killed")
	next, _ := reaperOf("true")
	if next == other || next == spare {
		t.Errorf("reaper %s after the spare %s was killed (%s busy)", next, other, spare)
	}

	// A command lowers its reaper's priority, which every later command
	// would inherit: that reaper is not used again.
	reaperOf(`perl -e 'setpriority(0, $ARGV[0], 7) or die "$!"' $PPID`)
	after, nice := reaperOf("nice")
	if after == next || nice != "0\n" {
		t.Errorf("after its priority was changed, reaper %s (was %s) runs a command at nice %q", after, next, nice)
	}

	p.Kill()
	if code := waitCode(t, p); code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit %d after Kill, want %d", code, 128+int(syscall.SIGKILL))
	}
	for _, f := range []string{"a.pid", "b.pid"} {
		code, got, _ := sh(t, j, `pid=$(cat `+f+`) && if [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; then echo alive; else echo dead; fi`)
		if code != 0 || strings.TrimSpace(got) != "dead" {
			t.Errorf("the child in %s is %q after the command on the spare was killed", f, got)
		}
	}
}
