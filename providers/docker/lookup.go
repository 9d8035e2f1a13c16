package docker

import (
	"context"
	"sort"

	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Finding sandboxes: by ID, checked to be this driver's (and, for a pooled
// container, claimed), and by labels.

// box is what the driver keeps of a sandbox it has checked. Container IDs
// are never reused and a claim never changes, so it cannot go stale, only
// absent.
type box struct {
	workdir string
	// env is a pooled sandbox's env (its claim's), given to each exec; a
	// cold one's is in its container's own config.
	env     map[string]string
	claimed bool // a pooled sandbox, whose claim goes with it
}

// workdir checks that id names a sandbox this driver made and returns its
// workdir.
func (p *Provider) workdir(ctx context.Context, id string) (string, error) {
	b, err := p.box(ctx, id)
	return b.workdir, err
}

// box checks that id names a sandbox this driver made. Names, short IDs,
// other people's containers and unclaimed pooled ones are "not found": the
// engine resolves those too, and they are not ours to touch.
func (p *Provider) box(ctx context.Context, id string) (box, error) {
	if b, ok := p.owned.Load(id); ok {
		return b.(box), nil
	}
	if !containerIDPattern.MatchString(id) {
		return box{}, notFound(id)
	}
	res, err := p.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return box{}, p.apiErr(id, "inspect sandbox", err)
	}
	c := res.Container
	if c.Config == nil || c.Config.Labels[labelManaged] != "true" {
		return box{}, notFound(id)
	}
	b := box{workdir: c.Config.Labels[labelWorkdir]}
	if b.workdir == "" {
		b.workdir = c.Config.WorkingDir
	}
	if pooled(c.Config.Labels) {
		claim, _, err := p.claimOf(ctx, id)
		if err != nil {
			return box{}, p.apiErr(id, "inspect sandbox", err)
		}
		if _, ok := sandboxLabels(c.Config.Labels, claim); !ok {
			return box{}, notFound(id)
		}
		b.env, b.claimed = claimEnv(claim), true
		// A channel this driver opened while the container was in its
		// pool has none of the sandbox's env: the next command opens one.
		p.closeChannel(id)
	}
	p.owned.Store(id, b)
	return b, nil
}

func (p *Provider) Get(ctx context.Context, id string) (providers.Sandbox, error) {
	if !containerIDPattern.MatchString(id) {
		return providers.Sandbox{}, notFound(id)
	}
	res, err := p.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return providers.Sandbox{}, p.apiErr(id, "inspect sandbox", err)
	}
	c := res.Container
	if c.Config == nil || c.Config.Labels[labelManaged] != "true" {
		return providers.Sandbox{}, notFound(id)
	}
	var claim map[string]string
	if pooled(c.Config.Labels) {
		if claim, _, err = p.claimOf(ctx, id); err != nil {
			return providers.Sandbox{}, p.apiErr(id, "inspect sandbox", err)
		}
	}
	labels, ok := sandboxLabels(c.Config.Labels, claim)
	if !ok {
		return providers.Sandbox{}, notFound(id)
	}
	return p.sandbox(c.ID, c.Config.Image, labels), nil
}

func (p *Provider) List(ctx context.Context, match map[string]string) ([]providers.Sandbox, error) {
	// A pooled sandbox's labels are on its claim, which the engine cannot
	// filter containers by: the match is applied here, to all.
	filters := make(client.Filters).Add("label", labelManaged+"=true")
	res, err := p.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, p.apiErr("", "list sandboxes", err)
	}
	var claims map[string]map[string]string
	for _, c := range res.Items {
		if pooled(c.Labels) {
			if claims, err = p.claims(ctx); err != nil {
				return nil, p.apiErr("", "list sandboxes", err)
			}
			break
		}
	}
	out := make([]providers.Sandbox, 0, len(res.Items))
	for _, c := range res.Items {
		labels, ok := sandboxLabels(c.Labels, claims[c.ID])
		if !ok {
			continue
		}
		if sb := p.sandbox(c.ID, c.Image, labels); labelsInclude(sb.Labels, match) {
			out = append(out, sb)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

func labelsInclude(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}
