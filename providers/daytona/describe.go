package daytona

import "github.com/mcp-sandbox/mcp-sandbox/providers"

var _ providers.Describer = (*Provider)(nil)

// Isolation: a Daytona sandbox is a container on Daytona's runners, on the vendor's
// machines, with the internet reachable unless the vendor's settings say
// otherwise.
func (p *Provider) Isolation() providers.Isolation {
	return providers.Isolation{Level: "container", Network: "internet (the vendor's)"}
}
