package runloop

import "github.com/mcp-sandbox/mcp-sandbox/providers"

var _ providers.Describer = (*Provider)(nil)

// Isolation: a Runloop devbox is a virtual machine, on the vendor's
// machines, with the internet reachable unless the vendor's settings say
// otherwise.
func (p *Provider) Isolation() providers.Isolation {
	return providers.Isolation{Level: "microvm", Network: "internet (the vendor's)"}
}
