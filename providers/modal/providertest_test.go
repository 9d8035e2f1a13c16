package modal

import (
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
)

// TestProviderSuite runs the shared behavioural suite against the fake,
// running as its own process so that the suite's memory checks measure the
// driver alone.
func TestProviderSuite(t *testing.T) {
	url := externalFake(t)
	providertest.Run(t, func(t *testing.T) providers.Provider {
		return newDriver(t, fakeOptions(url))
	})
}
