package daytona

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona/daytonafake"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakecmd"
)

const testKey = "test-key"

// startFake runs an in-process fake of Daytona for the test.
func startFake(t testing.TB) (*daytonafake.Server, string) {
	t.Helper()
	fake, err := daytonafake.New(daytonafake.Options{APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(func() {
		srv.Close()
		fake.Close()
	})
	return fake, srv.URL + "/api"
}

// fakeOptions points the driver at the fake through DAYTONA_API_URL's
// option. The fake runs commands on this machine, so it cannot offer
// Daytona's process isolation.
func fakeOptions(apiURL string) Options {
	return Options{
		APIKey: testKey, APIURL: apiURL,
		ServerID:     "test-server",
		Capabilities: providers.Capabilities{providers.CapStdin, providers.CapKillTree},
		RetryBase:    10 * time.Millisecond,
	}
}

func newDriver(t testing.TB, o Options) *Provider {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, p *Provider, opts providers.CreateOptions) providers.Sandbox {
	t.Helper()
	sb, err := p.Create(ctxT(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	return sb
}

// externalFake runs the fake as its own process (cmd/daytonafake), so that
// measurements of the driver (memory) do not count the fake's work. It
// returns the API URL.
func externalFake(t testing.TB) string {
	t.Helper()
	return fakecmd.Start(t, "./daytonafake/cmd/daytonafake", "DAYTONA_API_URL", "-api-key", testKey)
}
