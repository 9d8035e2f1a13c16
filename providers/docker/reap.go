package docker

import (
	"context"
	"errors"
	"time"

	cerrdefs "github.com/containerd/errdefs"
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
	claims, err := p.claims(ctx)
	if err != nil {
		return nil, p.apiErr("", "list sandboxes to reap", err)
	}
	now := time.Now()
	var removed []string
	var errs []error
	seen := map[string]bool{}
	for _, c := range res.Items {
		seen[c.ID] = true
		// Checked here too, so that no engine's reading of the filter can
		// widen what gets removed.
		if c.Labels[labelManaged] != "true" || c.Labels[labelServer] != p.set.server {
			continue
		}
		if pooled(c.Labels) {
			if gone, err := p.reapPooled(ctx, c, claims[c.ID], now); err != nil {
				errs = append(errs, err)
				continue
			} else if gone {
				continue // not a sandbox: not among those removed
			}
		}
		labels, ok := sandboxLabels(c.Labels, claims[c.ID])
		if !ok {
			continue
		}
		expires := p.expiry(labels, time.Unix(c.Created, 0))
		user := p.sandbox(c.ID, c.Image, labels).Labels
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
	// Claims whose container is gone (a removal cut short) go too. The
	// container list is older than the claims': each is checked again.
	for id, claim := range claims {
		if seen[id] || claim[labelServer] != p.set.server || !containerIDPattern.MatchString(id) {
			continue
		}
		if _, err := p.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); cerrdefs.IsNotFound(err) {
			p.dropClaim(id)
		}
	}
	return removed, errors.Join(errs...)
}

// reapPooled removes a pooled container that is no sandbox: unclaimed and
// past its expiry (a dead server's pool), or claimed for a removal that was
// cut short. gone says it was such a container, whatever became of it.
func (p *Provider) reapPooled(ctx context.Context, c containerSummary, claim map[string]string, now time.Time) (gone bool, err error) {
	switch {
	case claim[labelPurpose] == claimSandbox:
		return false, nil
	case claim == nil:
		if now.Before(p.expiry(c.Labels, time.Unix(c.Created, 0))) {
			return true, nil // a live server's pool
		}
		won, err := p.claim(ctx, c.ID, claimRemoval, nil)
		if err != nil {
			return true, p.apiErr(c.ID, "claim a pooled container to reap it", err)
		}
		if !won {
			// Handed out meanwhile: the next round judges the sandbox.
			return true, nil
		}
	}
	p.remove(c.ID)
	p.dropClaim(c.ID)
	p.log.Info("reaped a warm container", "container", c.ID[:12], "pool of", c.Labels[labelPoolBy])
	return true, nil
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
