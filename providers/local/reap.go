package local

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

var _ providers.Reaper = (*Provider)(nil)

// labelServer is the label the session manager puts this server's ID under.
const labelServer = "server"

// halfMadeAge is how old a sandbox directory without metadata (a create or
// destroy cut off by a crash) must be before the reaper removes it, so a
// create in progress in another process is never touched.
const halfMadeAge = 10 * time.Minute

// Reap removes this server's sandboxes (label server, from
// Config.ServerID) whose owner is known to be gone, processes,
// output and temp files included, and the remains of creates and destroys
// a crash cut short. Local sandboxes have no expiry: those whose owner
// cannot be known, and kept ones, stay until destroyed.
func (p *Provider) Reap(ctx context.Context, owner func(label string) providers.Liveness) ([]string, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, providers.Errorf(providers.ErrUnavailable, "list sandboxes to reap: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		id := e.Name()
		if uuid.Validate(id) != nil || len(id) != 36 || !e.IsDir() {
			continue // not a sandbox
		}
		m, err := p.load(id)
		if errors.Is(err, providers.ErrNotFound) {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > halfMadeAge {
				if err := removeAll(p.base(id)); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if err != nil || m.Labels[labelServer] != p.server {
			continue
		}
		if !providers.Reapable(m.Labels, false, owner) {
			continue
		}
		if err := p.Destroy(ctx, id); err != nil && !errors.Is(err, providers.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// hostname names this server when MCP_SANDBOX_SERVER_ID is unset, as the
// server itself does.
func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "default"
}
