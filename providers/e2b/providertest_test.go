package e2b

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

// TestProcessesSuite runs the background-process checks: e2b has processes
// through the shared in-sandbox supervisor, over Exec.
func TestProcessesSuite(t *testing.T) {
	url := externalFake(t)
	providertest.RunProcesses(t, func(t *testing.T) providers.Provider {
		return newDriver(t, fakeOptions(url))
	})
}
