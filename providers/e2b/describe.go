package e2b

import "github.com/mcp-sandbox/mcp-sandbox/providers"

var _ providers.Describer = (*Provider)(nil)

// Isolation: an E2B sandbox is a Firecracker microVM, on the vendor's
// machines, with the internet reachable unless the vendor's settings say
// otherwise.
func (p *Provider) Isolation() providers.Isolation {
	return providers.Isolation{Level: "microvm", Network: "internet (the vendor's)"}
}
