package supervisor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// The embedded helper is what its source builds today.
func TestEmbeddedHelperIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("rebuilds the helper")
	}
	want, err := os.ReadFile("helperbin/go-version")
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(want)); v != runtime.Version() {
		t.Skipf("the embedded helper was built by %s, this is %s: builds differ across versions", v, runtime.Version())
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("no helper is built for %s", runtime.GOARCH)
	}
	dir := t.TempDir()
	gen := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "github.com/mcp-sandbox/mcp-sandbox/providers/internal/genstatic", "-pkg", "./internal/helper/cmd/mcp-sandbox-supervisor", "-o", dir, "-arch", runtime.GOARCH)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run genstatic: %v\n%s", err, out)
	}
	name := "linux-" + runtime.GOARCH + ".gz"
	built, _ := os.ReadFile(filepath.Join(dir, name))
	embedded, _ := os.ReadFile(filepath.Join("helperbin", name))
	if len(built) == 0 || !bytes.Equal(built, embedded) {
		t.Fatalf("helperbin/%s is stale (%d bytes embedded, %d built): run go generate ./providers/supervisor", name, len(embedded), len(built))
	}
}

// hostRunner runs commands on this machine, in a directory standing for a
// sandbox, with its own TMPDIR: enough of a sandbox for the supervisor.
type hostRunner struct {
	dir, tmp string
	path     string // PATH for the commands
}

func newHostRunner(t *testing.T) *hostRunner {
	if runtime.GOOS != "linux" {
		t.Skip("the supervisor needs Linux's /proc")
	}
	h := &hostRunner{dir: t.TempDir(), tmp: t.TempDir(), path: "/usr/local/bin:/usr/bin:/bin"}
	if strings.ContainsAny(h.tmp, " ,:") {
		t.Fatalf("TMPDIR %q would not be used by the scripts", h.tmp)
	}
	return h
}

func (h *hostRunner) Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error) {
	if id != "box" {
		return providers.ExecResult{}, providers.Errorf(providers.ErrNotFound, "sandbox %q not found", id)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", req.Command)
	cmd.Dir = h.dir
	if req.Cwd != "" {
		cmd.Dir = filepath.Join(h.dir, req.Cwd)
	}
	cmd.Env = []string{"PATH=" + h.path, "TMPDIR=" + h.tmp, "HOME=" + h.dir}
	for k, v := range req.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, req.Stdout, req.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	res := providers.ExecResult{ExitCode: cmd.ProcessState.ExitCode(), Duration: time.Since(start)}
	if _, ok := err.(*exec.ExitError); ok {
		err = nil
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, err
}

func (h *hostRunner) state(t *testing.T, proc string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.tmp, procDir, proc, "state"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// onlyTools makes a PATH holding just the named tools, linked from this
// machine's.
func onlyTools(t *testing.T, tools ...string) string {
	dir := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s here", tool)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestSupervisorPicksTheHelperOrTheShell(t *testing.T) {
	ctx := context.Background()
	base := []string{"cat", "chmod", "mkdir", "mv", "rm", "wc", "setsid", "mkfifo", "dd", "stat", "sleep", "env", "grep", "cut", "timeout", "head", "sort", "echo", "kill"}
	for _, tc := range []struct {
		name   string
		uname  string // what uname -m says; "" means this machine's
		reaper bool
	}{
		{"HelperOnThisMachine", "", true},
		{"ShellOnAnUnknownMachine", "riscv64", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostRunner(t)
			h.path = onlyTools(t, base...)
			fake := filepath.Join(h.path, "uname")
			if tc.uname != "" {
				os.WriteFile(fake, []byte("#!/bin/sh\necho "+tc.uname+"\n"), 0o755)
			} else if err := os.Symlink(must(exec.LookPath("uname")), fake); err != nil {
				t.Fatal(err)
			}
			s := New(h, Options{})
			in, err := s.StartProcess(ctx, "box", providers.ProcessSpec{Command: "echo hi; exit 3"})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.HasSuffix(strings.TrimSpace(h.state(t, in.ID)), " reaper"); got != tc.reaper {
				t.Fatalf("supervised by the helper: %v, want %v (state %q)", got, tc.reaper, h.state(t, in.ID))
			}
			if in, err = s.WaitProcess(ctx, "box", in.ID, 30*time.Second); err != nil || in.Running || in.ExitCode != 3 || in.StdoutBytes != 3 {
				t.Fatalf("%+v %v", in, err)
			}
			if tc.reaper {
				// A second server finds the helper in place.
				if name, path, err := New(h, Options{}).installHelper(ctx, "box"); err != nil || !strings.HasPrefix(name, "mcp-sandbox-supervisor-") || !strings.HasSuffix(path, "/.bin/"+name) {
					t.Fatalf("second install: %q %q %v", name, path, err)
				}
			}
		})
	}
}

// A sandbox without the tools processes need still runs commands, through
// a plain exec, and a start says what it lacks.
func TestNoProcessToolsStillRuns(t *testing.T) {
	ctx := context.Background()
	h := newHostRunner(t)
	h.path = onlyTools(t, "echo", "cat", "mkdir", "uname", "chmod", "mv", "rm", "wc")
	s := New(h, Options{})
	var out bytes.Buffer
	res, err := s.RunProcess(ctx, "box", providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "echo hi; exit 4"}, Wait: 10 * time.Second, Stdout: &out})
	if err != nil || res.ExitCode != 4 || res.ProcessID != "" || out.String() != "hi\n" {
		t.Fatalf("RunProcess: %+v %q %v", res, out.String(), err)
	}
	_, err = s.StartProcess(ctx, "box", providers.ProcessSpec{Command: "true"})
	if err == nil || !strings.Contains(err.Error(), "the sandbox has no setsid") {
		t.Fatalf("StartProcess: %v", err)
	}
	if _, err := s.StartProcess(ctx, "nope", providers.ProcessSpec{Command: "true"}); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("unknown sandbox: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
