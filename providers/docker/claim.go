package docker

import (
	"context"
	"encoding/json"
	"maps"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Claims. A pooled container (pool.go) is made before anyone asks for it,
// and a container's labels cannot change after it is made; what a hand-out
// adds (the sandbox's name, owner, labels, env, creation and expiry) goes
// on a claim instead: a small volume named after the container, whose
// labels hold it. The engine makes a volume name once: creating one that
// exists answers the existing volume with its first labels, so of two
// servers claiming one container, the one whose token comes back has it,
// and the other learns it lost. A reaper, a retiring pool and a stopping
// server claim a container before removing it, so no hand-out can win it
// while it goes. Get, List and Reap read a pooled container through its
// claim; without one it is no sandbox.

const (
	claimPrefix  = "mcp-sandbox-claim-"
	labelClaim   = "mcp-sandbox.claim"       // the claimed container's ID
	labelToken   = "mcp-sandbox.claim.token" // who won the claim
	labelPurpose = "mcp-sandbox.claim.for"   // claimSandbox or claimRemoval
	labelEnv     = "mcp-sandbox.env"         // the sandbox's env, as a JSON object
)

const (
	claimSandbox = "sandbox" // handed out: the claim describes a sandbox
	claimRemoval = "removal" // taken to be removed: no sandbox
)

func claimName(id string) string { return claimPrefix + id }

// claim tries to claim the container id for purpose, with labels (nil for
// a removal). won says whether this call made the claim; the claim's
// labels are returned either way.
func (p *Provider) claim(ctx context.Context, id, purpose string, labels map[string]string) (won bool, err error) {
	token := randomHex(16)
	all := maps.Clone(labels)
	if all == nil {
		all = map[string]string{}
	}
	all[labelClaim] = id
	all[labelServer] = p.set.server
	all[labelToken] = token
	all[labelPurpose] = purpose
	res, err := p.cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: claimName(id), Driver: "local", Labels: all})
	if err != nil {
		return false, err
	}
	return res.Volume.Labels[labelToken] == token, nil
}

// claimOf reads a container's claim; ok is false when it has none.
func (p *Provider) claimOf(ctx context.Context, id string) (labels map[string]string, ok bool, err error) {
	res, err := p.cli.VolumeInspect(ctx, claimName(id), client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return res.Volume.Labels, res.Volume.Labels[labelClaim] == id, nil
}

// claims lists every claim on the engine, by container ID.
func (p *Provider) claims(ctx context.Context) (map[string]map[string]string, error) {
	res, err := p.cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", labelClaim)})
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string, len(res.Items))
	for _, v := range res.Items {
		if id := v.Labels[labelClaim]; v.Name == claimName(id) {
			out[id] = v.Labels
		}
	}
	return out, nil
}

// dropClaim removes a claim once its container is gone.
func (p *Provider) dropClaim(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.cli.VolumeRemove(ctx, claimName(id), client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		p.log.Warn("cannot remove a sandbox's claim; the reaper will", "sandbox", id[:min(12, len(id))], "err", err)
	}
}

// pooled says whether a container's labels are a pooled container's.
func pooled(labels map[string]string) bool { return labels[labelPool] != "" }

// sandboxLabels is what describes a container as a sandbox: its own labels,
// or for a pooled one, those with its claim's on top. ok is false for a
// pooled container that is no sandbox (unclaimed, or claimed for removal).
func sandboxLabels(container, claim map[string]string) (labels map[string]string, ok bool) {
	if !pooled(container) {
		return container, true
	}
	if claim == nil || claim[labelPurpose] != claimSandbox {
		return nil, false
	}
	labels = maps.Clone(container)
	for k, v := range claim {
		switch k {
		case labelClaim, labelToken, labelPurpose, labelEnv:
		default:
			labels[k] = v
		}
	}
	return labels, true
}

// claimEnv is the env a hand-out gave the sandbox.
func claimEnv(claim map[string]string) map[string]string {
	var env map[string]string
	if s := claim[labelEnv]; s != "" {
		json.Unmarshal([]byte(s), &env)
	}
	return env
}

func encodeEnv(env map[string]string) string {
	if len(env) == 0 {
		return ""
	}
	b, _ := json.Marshal(env)
	return string(b)
}
