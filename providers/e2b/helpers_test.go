package e2b

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakecmd"
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
		Capabilities: providers.Capabilities{providers.CapStdin},
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
	return fakecmd.Start(t, "./e2bfake/cmd/e2bfake", "E2B_API_URL", "-api-key", testKey)
}
