package docker

import "github.com/moby/moby/client"

// Client is the engine client, for tests that inspect containers directly;
// the driver does not hand it out.
func (p *Provider) Client() *client.Client { return p.cli }

// SetListBudget lets tests force ListFiles down either path: 0 always walks
// in the container, -1 always reads the archive.
func (p *Provider) SetListBudget(n int64) { p.listBudget = n }
