package docker

import (
	"context"
	"time"

	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Client is the engine client, for tests that inspect containers directly;
// the driver does not hand it out.
func (p *Provider) Client() *client.Client { return p.cli }

// ListFilesByArchive lists as ListFiles does in an image without the tools
// to walk from metadata, with no budget, so tests can compare both ways.
func (p *Provider) ListFilesByArchive(ctx context.Context, id, name string, depth, limit int) ([]providers.FileInfo, bool, error) {
	abs, err := p.listTarget(ctx, id, name)
	if err != nil {
		return nil, false, err
	}
	return p.listByArchive(ctx, id, name, abs, depth, limit, noBudget)
}

// UseEngineExec sends every command through the engine's exec, as where no
// channel can be had, so tests and benchmarks can compare both ways.
func (p *Provider) UseEngineExec() { p.noChannel = true }

// WaitChannel waits up to d for the sandbox's channel to be open (it opens
// in the background once the helper is in place), and says whether it is.
func (p *Provider) WaitChannel(id string, d time.Duration) bool {
	if p.noChannel {
		return false
	}
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if p.channel(id) != nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// WarmOnly makes Create wait for a warm container rather than make one,
// so that a suite run on the driver tests pooled sandboxes only.
func (p *Provider) WarmOnly() { p.warmOnly = true }

// WarmCount is how many containers this server process keeps ready to be
// handed out for its default image.
func (p *Provider) WarmCount(ctx context.Context) int {
	user, imageID, _, err := p.imageUser(ctx, p.set.image)
	if err != nil || p.pool == nil {
		return 0
	}
	ready, _ := p.pool.ready(ctx, p.poolKey(imageID, user), p.pool.instance)
	return len(ready)
}

// AbandonPool stops keeping the pool and leaves it in place, as a server
// that dies does.
func (p *Provider) AbandonPool() {
	p.pool.stop()
	<-p.pool.done
	p.pool = nil
}
