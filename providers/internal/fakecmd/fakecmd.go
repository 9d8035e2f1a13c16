// Package fakecmd runs a vendor fake as its own process (its cmd/<name>fake,
// see fakebox.Command) for a test, so that what the test measures of the
// driver (memory, time) does not count the fake's work.
package fakecmd

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Start builds the command in pkg (a path such as ./e2bfake/cmd/e2bfake,
// relative to the test's directory), runs it with -addr 127.0.0.1:0 and
// args, and returns the value of the variable key among those it prints.
// The fake stops when the test ends.
func Start(t testing.TB, pkg, key string, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, pkg)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the fake: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			go io.Copy(io.Discard, stdout)
			return v
		}
	}
	t.Fatalf("%s printed no %s: %v", filepath.Base(pkg), key, sc.Err())
	return ""
}
