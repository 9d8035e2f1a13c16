package jail

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if IsInit(os.Args) {
		os.Exit(Main(os.Args))
	}
	os.Exit(m.Run())
}

// startJail starts a jail on a fresh directory; it ends with the test.
// Machines that forbid user namespaces skip, except in CI where the tests
// must run.
func startJail(t testing.TB, opts Options) *Jail {
	t.Helper()
	if (opts.Level == "" || opts.Level == LevelNamespaces) && !userNamespacesWork() {
		if os.Getenv("CI") == "true" {
			t.Fatal("this machine forbids user namespaces; CI needs them")
		}
		t.Skip("this machine forbids user namespaces")
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.SocketDir == "" {
		opts.SocketDir = shortTempDir(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, _, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return j
}

// shortTempDir is a private directory with a path short enough for a Unix
// socket.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "jt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// sh runs a command in the jail and returns its exit code and output.
func sh(t testing.TB, j *Jail, command string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := j.Run(ctx, Cmd{Command: command, Stdout: &out, Stderr: &errOut})
	if err != nil {
		t.Fatalf("Run(%q): %v", command, err)
	}
	return code, out.String(), errOut.String()
}

func TestRunBasics(t *testing.T) {
	dir := t.TempDir()
	j := startJail(t, Options{Dir: dir})
	t.Logf("isolation: %+v", j.Isolation())
	code, out, errOut := sh(t, j, "echo out; echo err >&2; pwd; id -u; hostname; exit 3")
	if code != 3 {
		t.Fatalf("exit = %d, want 3 (stderr %q)", code, errOut)
	}
	if out != "out\n/workspace\n0\nsandbox\n" || errOut != "err\n" {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}
	if code, _, e := sh(t, j, "echo hi > /workspace/f && mkdir -p d && mv f d/g"); code != 0 {
		t.Fatalf("write in workspace: %d %s", code, e)
	}
	b, err := os.ReadFile(filepath.Join(dir, "d", "g"))
	if err != nil || string(b) != "hi\n" {
		t.Fatalf("file written inside: %q %v", b, err)
	}
	// A file is handed to the command as is: no copy through the server.
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if code, err := j.Run(context.Background(), Cmd{Command: "echo to a file", Stdout: f}); code != 0 || err != nil {
		t.Fatalf("Run to a file: %d %v", code, err)
	}
	if b, _ := os.ReadFile(f.Name()); string(b) != "to a file\n" {
		t.Errorf("file output %q", b)
	}
	var out2 bytes.Buffer
	code, err = j.Run(context.Background(), Cmd{Command: "cat; echo \"$FOO\"", Stdin: strings.NewReader("in\n"), Env: []string{"FOO=bar"}, Stdout: &out2})
	if err != nil || code != 0 || out2.String() != "in\nbar\n" {
		t.Fatalf("stdin/env: %d %v %q", code, err, out2.String())
	}
}

func TestConcurrentRunsKeepTheirStreams(t *testing.T) {
	j := startJail(t, Options{})
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			var out, errOut bytes.Buffer
			cmd := fmt.Sprintf(`head -c %d /dev/zero | tr '\0' a; echo %d >&2`, 1<<20+i, i)
			code, err := j.Run(context.Background(), Cmd{Command: cmd, Stdout: &out, Stderr: &errOut})
			switch {
			case err != nil || code != 0:
				errs <- fmt.Errorf("run %d: %d %v", i, code, err)
			case out.Len() != 1<<20+i || strings.Trim(out.String(), "a") != "":
				errs <- fmt.Errorf("run %d: %d bytes of stdout, want %d", i, out.Len(), 1<<20+i)
			case errOut.String() != fmt.Sprintf("%d\n", i):
				errs <- fmt.Errorf("run %d: stderr %q", i, errOut.String())
			default:
				errs <- nil
			}
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
