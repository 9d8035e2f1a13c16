package docker

// SetListBudget lets tests force ListFiles down either path: 0 always walks
// in the container, -1 always reads the archive.
func (p *Provider) SetListBudget(n int64) { p.listBudget = n }
