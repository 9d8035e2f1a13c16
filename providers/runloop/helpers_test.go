package runloop

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakecmd"
	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
)

const testKey = "test-key"

// startFake runs an in-process fake of Runloop for the test.
func startFake(t testing.TB, opts runloopfake.Options) (*runloopfake.Server, string) {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = testKey
	}
	fake, err := runloopfake.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := fake.HTTPServer()
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		fake.Close()
	})
	return fake, "http://" + ln.Addr().String()
}

// fakeOptions points the driver at the fake. The fake runs commands on
// this machine, so it cannot offer Runloop's process isolation.
func fakeOptions(url string) Options {
	return Options{
		APIKey: testKey, BaseURL: url,
		ServerID:     "test-server",
		Capabilities: providers.Capabilities{providers.CapStdin, providers.CapKillTree},
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

// externalFake runs the fake as its own process (cmd/runloopfake), so that
// measurements of the driver (memory) do not count the fake's work.
func externalFake(t testing.TB) string {
	t.Helper()
	return fakecmd.Start(t, "./runloopfake/cmd/runloopfake", "RUNLOOP_BASE_URL", "-api-key", testKey)
}
