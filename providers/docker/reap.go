package docker

import (
	"context"
	"errors"
	"time"

	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

var _ providers.Reaper = (*Provider)(nil)

// Reap removes this server's containers (label mcp-sandbox.server, from
// MCP_SANDBOX_DOCKER_SERVER) that are past their expiry (created +
// MCP_SANDBOX_DOCKER_EXPIRY) and whose owning session (the
// providers.LabelSession label) is not live. A container with no owner is
// removed once expired. live may be nil: then no session is live, as at
// the start-up of a server that keeps sessions in memory.
//
// Call it at start-up and on a timer; it is safe to run from several
// replicas at once.
func (p *Provider) Reap(ctx context.Context, live func(sessionID string) bool) ([]string, error) {
	filters := make(client.Filters).Add("label", labelManaged+"=true", labelServer+"="+p.set.server)
	res, err := p.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, p.apiErr("", "list sandboxes to reap", err)
	}
	now := time.Now()
	var removed []string
	var errs []error
	for _, c := range res.Items {
		// Checked here too, so that no engine's reading of the filter can
		// widen what gets removed.
		if c.Labels[labelManaged] != "true" || c.Labels[labelServer] != p.set.server {
			continue
		}
		expires, err := time.Parse(time.RFC3339Nano, c.Labels[labelExpires])
		if err != nil {
			expires = time.Unix(c.Created, 0).Add(p.set.expiry)
		}
		if now.Before(expires) {
			continue
		}
		if s := c.Labels[userLabelPrefix+providers.LabelSession]; s != "" && live != nil && live(s) {
			continue
		}
		if err := p.Destroy(ctx, c.ID); err != nil && !errors.Is(err, providers.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		p.log.Info("reaped an expired sandbox", "sandbox", c.ID[:12], "session", c.Labels[userLabelPrefix+providers.LabelSession], "expired", expires)
		removed = append(removed, c.ID)
	}
	return removed, errors.Join(errs...)
}
