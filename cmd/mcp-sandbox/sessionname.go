package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"

	"github.com/mcp-sandbox/mcp-sandbox/session"
)

// parseSessionName checks --session-name: a stdio setting (an HTTP server's
// sessions are named by their clients' Mcp-Session-Id).
func parseSessionName(v, httpAddr string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	if httpAddr != "" {
		return "", errors.New("names the one session of a stdio server; over HTTP, sessions are kept by --session-store")
	}
	return v, session.ValidSessionName(v)
}

// sessionFile is where a named stdio session is kept: in the state dir,
// beside the local sandboxes it usually holds.
func sessionFile(stateDir, name string) string {
	return filepath.Join(stateDir, "sessions", name+".json")
}

// endSession is what the end of an MCP session does to its sandboxes. A
// named stdio session whose sandboxes are kept is not ended: its record
// stays for the next server started with the same name, which serves it
// on.
//
// In a shared store, a session's end in this process (its GET stream
// closing, the idle sweep, shutdown) is not its end: other servers serve
// it on. Only a DELETE ends it (see replicaGate).
func (a *app) endSession(ctx context.Context, id string) {
	if a.store.Shared() {
		a.sessions.Detach(id)
		return
	}
	if a.cfg.SessionName != "" && a.cfg.KeepSandboxes {
		a.sessions.Detach(id)
		a.log.Info("session kept for the next server with the same name", "name", a.cfg.SessionName)
		return
	}
	a.sessions.End(ctx, id)
}
