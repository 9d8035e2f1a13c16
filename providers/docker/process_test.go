package docker_test

import (
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
)

func TestProcessesSuite(t *testing.T) {
	set := settings() // every driver shares the engine and server name, as a restarted server would
	providertest.RunProcesses(t, func(t *testing.T) providers.Provider { return open(t, set) })
}
