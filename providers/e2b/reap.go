package e2b

import (
	"context"
	"errors"
	"strings"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

var _ providers.Reaper = (*Provider)(nil)

// Reap kills this server's sandboxes (metadata mcp-sandbox:server, from
// MCP_SANDBOX_SERVER_ID) whose owner is known to be gone. E2B ends every
// sandbox at its own timeout (MCP_SANDBOX_E2B_TIMEOUT, pushed back only
// while a server uses it), so that is their expiry: the rest are left to it.
func (p *Provider) Reap(ctx context.Context, owner func(label string) providers.Liveness) ([]string, error) {
	found, err := p.list(ctx, map[string]string{metaServer: p.o.ServerID})
	if err != nil {
		return nil, p.typed(ctx, "", "list E2B sandboxes to reap", err)
	}
	var removed []string
	var errs []error
	for _, s := range found {
		if s.Metadata[metaServer] != p.o.ServerID { // whatever the API made of the filter
			continue
		}
		labels := map[string]string{}
		for k, v := range s.Metadata {
			if !strings.HasPrefix(k, metaPrefix) {
				labels[k] = v
			}
		}
		if !providers.Reapable(labels, false, owner) {
			continue
		}
		if err := p.Destroy(ctx, s.SandboxID); err != nil && !errors.Is(err, providers.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		p.log.Info("reaped a sandbox", "sandbox", s.SandboxID, "owner", labels[providers.LabelSession])
		removed = append(removed, s.SandboxID)
	}
	return removed, errors.Join(errs...)
}
