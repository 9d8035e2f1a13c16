package e2b

import (
	"bufio"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
)

const testKey = "test-key"

// startFake runs an in-process fake of E2B for the test.
func startFake(t testing.TB) (*e2bfake.Server, string) {
	t.Helper()
	fake, err := e2bfake.New(e2bfake.Options{APIKey: testKey, KeepaliveInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(func() {
		srv.Close()
		fake.Close()
	})
	return fake, srv.URL
}

// fakeOptions points the driver at the fake the way a self-hosted E2B is
// configured. The fake runs commands on this machine, so it cannot offer
// E2B's process isolation.
func fakeOptions(url string) Options {
	return Options{
		APIKey: testKey, APIURL: url, SandboxURL: url,
		ServerID:     "test-server",
		Capabilities: providers.Capabilities{providers.CapStdin, providers.CapProcesses},
		RetryBase:    10 * time.Millisecond,
	}
}

func newDriver(t *testing.T, o Options) *Provider {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// externalFake runs the fake as its own process (cmd/e2bfake), so that
// measurements of the driver (allocations) do not count the fake's work.
func externalFake(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "e2bfake")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./e2bfake/cmd/e2bfake")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the fake: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-api-key", testKey)
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
		if u, ok := strings.CutPrefix(sc.Text(), "E2B_API_URL="); ok {
			go io.Copy(io.Discard, stdout)
			return u
		}
	}
	t.Fatalf("the fake printed no E2B_API_URL: %v", sc.Err())
	return ""
}
