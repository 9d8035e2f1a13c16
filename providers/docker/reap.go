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
// MCP_SANDBOX_SERVER_ID) that providers.Reapable lets go: a dead owner's at
// once, the rest once expired. A container expires at the earlier of its
// expires label and its creation plus the current MCP_SANDBOX_DOCKER_EXPIRY,
// so lowering the setting at a restart reaches sandboxes made before it.
//
// Call it at start-up and on a timer; it is safe to run from several
// replicas at once.
func (p *Provider) Reap(ctx context.Context, owner func(label string) providers.Liveness) ([]string, error) {
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
		expires := p.expiry(c.Labels, time.Unix(c.Created, 0))
		user := p.sandbox(c.ID, c.Image, c.Labels).Labels
		if !providers.Reapable(user, !now.Before(expires), owner) {
			continue
		}
		if err := p.Destroy(ctx, c.ID); err != nil && !errors.Is(err, providers.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		p.log.Info("reaped a sandbox", "sandbox", c.ID[:12], "owner", user[providers.LabelSession], "expires", expires)
		removed = append(removed, c.ID)
	}
	return removed, errors.Join(errs...)
}

// expiry is when a container stops being safe from the reaper.
func (p *Provider) expiry(labels map[string]string, created time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, labels[labelCreated]); err == nil {
		created = t
	}
	expires := created.Add(p.set.expiry)
	if t, err := time.Parse(time.RFC3339Nano, labels[labelExpires]); err == nil && t.Before(expires) {
		expires = t
	}
	return expires
}
