package server

import (
	"context"
	"sync"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// requestNotifications carries the notifications a request's handler sends
// while a Streamable HTTP POST is being served. They are written to that
// POST's stream, ahead of its response, instead of the session-wide channel
// that the standalone GET stream and concurrent POSTs also read: the spec says
// such messages SHOULD relate to the originating request, and a client drops a
// progress notification that arrives after the response it belongs to.
type requestNotifications struct {
	session ClientSession
	ch      chan mcp.JSONRPCNotification

	mu     sync.Mutex
	closed bool
}

type requestNotificationsKey struct{}

func newRequestNotifications(session ClientSession) *requestNotifications {
	return &requestNotifications{session: session, ch: make(chan mcp.JSONRPCNotification, 100)}
}

// lockOpen locks r and reports whether the request is still being served.
// When it returns true the caller sends on ch (without blocking) and then
// unlocks mu; when false the request has finished and the caller falls back
// to the session channel.
func (r *requestNotifications) lockOpen() bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	return true
}

// close stops further offers; after it the owner drains ch knowing nothing
// more can arrive.
func (r *requestNotifications) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

func requestNotificationsFrom(ctx context.Context, session ClientSession) *requestNotifications {
	r, ok := ctx.Value(requestNotificationsKey{}).(*requestNotifications)
	if !ok || r.session != session {
		return nil
	}
	return r
}
