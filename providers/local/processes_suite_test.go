package local_test

import (
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
)

func TestProcessesSuite(t *testing.T) {
	dir := t.TempDir() // every driver shares it, as a restarted server would
	providertest.RunProcesses(t, func(t *testing.T) providers.Provider {
		p, err := local.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	})
}
