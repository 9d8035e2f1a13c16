package local_test

import (
	"context"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
)

// newProvider returns drivers that share one state dir, as a restarted
// server would.
func newProvider(t *testing.T) providertest.NewProvider {
	dir := t.TempDir()
	return func(t *testing.T) providers.Provider {
		p, err := local.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
}

func TestProvider(t *testing.T) {
	providertest.Run(t, newProvider(t))
}

// withoutStdin is the local driver minus CapStdin, refusing stdin the way a
// driver without it must: the suite's capability checks take the other path.
type withoutStdin struct{ providers.Provider }

func (w withoutStdin) Capabilities() providers.Capabilities {
	return providers.Capabilities{providers.CapKillTree}
}

func (w withoutStdin) Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error) {
	if req.Stdin != nil {
		return providers.ExecResult{}, providers.Errorf(providers.ErrUnsupported, "this driver cannot pass stdin to a command")
	}
	return w.Provider.Exec(ctx, id, req)
}

func TestProviderWithoutStdin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole suite again")
	}
	inner := newProvider(t)
	providertest.Run(t, func(t *testing.T) providers.Provider { return withoutStdin{inner(t)} })
}
