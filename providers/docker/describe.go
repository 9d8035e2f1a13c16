package docker

import (
	"fmt"

	units "github.com/docker/go-units"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

var _ providers.Describer = (*Provider)(nil)

// Isolation: a hardened container (all capabilities dropped but a few,
// no-new-privileges) on the configured network, within its limits.
func (p *Provider) Isolation() providers.Isolation {
	limits := fmt.Sprintf("memory %s, cpus %g, processes %d", units.BytesSize(float64(p.set.memory)), float64(p.set.nanoCPUs)/1e9, p.set.pids)
	if p.set.disk > 0 {
		limits += ", disk " + units.BytesSize(float64(p.set.disk))
	}
	return providers.Isolation{Level: "container", Network: p.set.network, Limits: limits}
}
