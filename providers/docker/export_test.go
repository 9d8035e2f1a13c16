package docker

import (
	"context"

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
