package modal

import "github.com/mcp-sandbox/mcp-sandbox/providers"

var _ providers.Describer = (*Provider)(nil)

// Isolation: a Modal sandbox is a gVisor container, on the vendor's
// machines, with the internet reachable unless the vendor's settings say
// otherwise.
func (p *Provider) Isolation() providers.Isolation {
	return providers.Isolation{Level: "container", Network: "internet (the vendor's)"}
}
