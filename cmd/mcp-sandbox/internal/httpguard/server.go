package httpguard

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Timeouts of the http.Server. There is no WriteTimeout: a tool call may
// stream progress for minutes.
const (
	ReadHeaderTimeout = 10 * time.Second  // slow-loris on headers
	ReadTimeout       = 60 * time.Second  // whole request, body included
	IdleTimeout       = 120 * time.Second // keep-alive connections
	MaxHeaderBytes    = 64 << 10
)

// NewServer returns an http.Server for h with the timeouts above.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// SessionCloser ends every MCP session (firing the unregister hooks that
// release each session's sandboxes); *server.StreamableHTTPServer is one.
type SessionCloser interface {
	Shutdown(ctx context.Context) error
}

// Shutdown stops srv in the order that lets in-flight work finish and then
// cleans up:
//  1. the guard drains: new requests get 503 and GET streams end (they never
//     finish by themselves and would hold srv.Shutdown until the deadline);
//  2. srv.Shutdown closes the listeners and waits for in-flight tool calls;
//  3. sessions.Shutdown ends every session, so their sandboxes are released.
//
// (Ending sessions first, as a plain mcp-go server does, would destroy the
// sandboxes of calls still running.) If ctx expires during step 2, open
// connections are closed and the sessions are still cleaned up, with
// cleanupGrace of extra time.
func Shutdown(ctx context.Context, g *Guard, srv *http.Server, sessions SessionCloser, cleanupGrace time.Duration) error {
	g.Drain()
	httpErr := srv.Shutdown(ctx)
	if httpErr != nil {
		srv.Close()
	}
	cleanupCtx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		cleanupCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), cleanupGrace)
		defer cancel()
	}
	return errors.Join(httpErr, sessions.Shutdown(cleanupCtx))
}
