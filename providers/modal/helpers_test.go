package modal

import (
	"context"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakecmd"
	"github.com/mcp-sandbox/mcp-sandbox/providers/modal/modalfake"
)

const (
	testTokenID     = "ak-test"
	testTokenSecret = "as-test"
)

// startFake runs an in-process fake of Modal for the test.
func startFake(t testing.TB) (*modalfake.Server, string) {
	t.Helper()
	return startFakeWith(t, modalfake.Options{})
}

// startFakeWith is startFake with options (the tokens are set here).
func startFakeWith(t testing.TB, o modalfake.Options) (*modalfake.Server, string) {
	t.Helper()
	o.TokenID, o.TokenSecret = testTokenID, testTokenSecret
	fake, err := modalfake.New(o)
	if err != nil {
		t.Fatal(err)
	}
	url, err := fake.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake, url
}

// fakeOptions points the driver at the fake through MODAL_SERVER_URL's
// option. The fake runs commands on this machine, so it cannot offer
// Modal's process isolation; killing a command's tree is the driver's own
// doing (by its environment mark), so the suite checks it here.
func fakeOptions(url string) Options {
	return Options{
		TokenID: testTokenID, TokenSecret: testTokenSecret, ServerURL: url,
		ServerID:     "test-server",
		Image:        "alpine:3.21",
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

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func create(t testing.TB, p *Provider, opts providers.CreateOptions) providers.Sandbox {
	t.Helper()
	sb, err := p.Create(ctxT(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		p.Destroy(ctx, sb.ID)
	})
	return sb
}

// externalFake runs the fake as its own process (cmd/modalfake), so that
// measurements of the driver (allocations) do not count the fake's work.
func externalFake(t testing.TB) string {
	t.Helper()
	return fakecmd.Start(t, "./modalfake/cmd/modalfake", "MODAL_SERVER_URL", "-token-id", testTokenID, "-token-secret", testTokenSecret)
}
