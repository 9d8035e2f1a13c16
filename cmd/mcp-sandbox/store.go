package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/session"
)

// storeMemory is the --session-store value for sessions kept in this
// process, the default.
const storeMemory = "memory"

// parseSessionStore checks --session-store: "memory" or a Redis URL. A
// stdio server's one session is always named "stdio", so in a shared store
// every stdio server would hold the same sandboxes: refused.
func parseSessionStore(v, httpAddr string) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "" || strings.EqualFold(v, storeMemory):
		return storeMemory, nil
	case !strings.HasPrefix(v, "redis://") && !strings.HasPrefix(v, "rediss://") && !strings.HasPrefix(v, "unix://"):
		return "", fmt.Errorf("use %q or a Redis URL such as redis://host:6379/0 (rediss:// for TLS)", storeMemory)
	case httpAddr == "":
		return "", fmt.Errorf("a shared store serves HTTP sessions only: every stdio server's session has the same name, so they would share sandboxes; add --http, or keep the %q store", storeMemory)
	}
	return v, nil
}

// storeDialTimeout bounds connecting to the session store at start-up.
const storeDialTimeout = 10 * time.Second

// openStore opens the configured session store. Records idle past the HTTP
// session idle timeout expire; a stdio session lives as long as its server.
func openStore(cfg Config, stateDir string) (session.Store, error) {
	if cfg.SessionName != "" {
		if stateDir == "" {
			return nil, errors.New("--session-name / MCP_SANDBOX_SESSION_NAME: no state dir to keep the session in; set --state-dir")
		}
		s, err := session.OpenFileStore(sessionFile(stateDir, cfg.SessionName))
		if err != nil {
			return nil, fmt.Errorf("session %q (--session-name / MCP_SANDBOX_SESSION_NAME): %w", cfg.SessionName, err)
		}
		return s, nil
	}
	ttl := time.Duration(0)
	if cfg.HTTPAddr != "" {
		ttl = cfg.SessionIdleTimeout
	}
	if cfg.SessionStore == storeMemory || cfg.SessionStore == "" {
		return session.NewMemoryStore(ttl), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeDialTimeout)
	defer cancel()
	s, err := session.NewRedisStore(ctx, cfg.SessionStore, ttl)
	if err != nil {
		return nil, fmt.Errorf("session store (--session-store / MCP_SANDBOX_SESSION_STORE): %w", err)
	}
	return s, nil
}
