package httpguard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/mark3labs/mcp-go/server"
)

// sessionHeader is the Streamable HTTP session header.
const sessionHeader = "Mcp-Session-Id"

// SessionLimiter knows the live MCP sessions from the server's register and
// unregister hooks (the only place that sees every way a session ends:
// DELETE, idle expiry, shutdown). With it the guard
//   - refuses a new initialize when max sessions are live, and
//   - refuses a GET stream for an ID that is not a live session: mcp-go would
//     otherwise mint and register a brand-new session for it, a way around
//     both the cap and the session's owner;
//   - answers a DELETE of an ID that is not a live session with 404, where
//     mcp-go would answer 200 as if it had ended something.
type SessionLimiter struct {
	max int

	mu      sync.Mutex
	live    map[string]struct{}
	pending int // initialize requests admitted but not yet finished
}

// NewSessionLimiter allows at most max live sessions; max <= 0 means no cap
// (GET streams are still checked).
func NewSessionLimiter(max int) *SessionLimiter {
	return &SessionLimiter{max: max, live: map[string]struct{}{}}
}

// AddHooks registers the limiter on the MCP server's hooks.
func (l *SessionLimiter) AddHooks(h *server.Hooks) {
	h.AddOnRegisterSession(func(_ context.Context, s server.ClientSession) {
		l.mu.Lock()
		l.live[s.SessionID()] = struct{}{}
		l.mu.Unlock()
	})
	h.AddOnUnregisterSession(func(_ context.Context, s server.ClientSession) {
		l.mu.Lock()
		delete(l.live, s.SessionID())
		l.mu.Unlock()
	})
}

// Live returns the number of live sessions.
func (l *SessionLimiter) Live() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live)
}

func (l *SessionLimiter) isLive(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.live[id]
	return ok
}

// admit decides whether r may proceed. release must be called when the
// request is done. A POST body must already be buffered.
func (l *SessionLimiter) admit(g *Guard, w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	nothing := func() {}
	switch r.Method {
	case http.MethodGet, http.MethodDelete:
		id := r.Header.Get(sessionHeader)
		if id == "" {
			what := "a GET stream"
			if r.Method == http.MethodDelete {
				what = "a DELETE"
			}
			g.reject(w, r, http.StatusBadRequest, codeInvalidRequest,
				what+" needs the Mcp-Session-Id header returned by initialize")
			return nil, false
		}
		if !l.isLive(id) {
			g.reject(w, r, http.StatusNotFound, codeInvalidRequest,
				"unknown or ended session: send initialize to start a new one")
			return nil, false
		}
		return nothing, true
	case http.MethodPost:
		if !isInitialize(r) {
			return nothing, true
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.max > 0 && len(l.live)+l.pending >= l.max {
			w.Header().Set("Retry-After", "10")
			g.reject(w, r, http.StatusServiceUnavailable, codeServerError, fmt.Sprintf(
				"session limit reached: this server allows %d live sessions (--max-sessions, MCP_SANDBOX_MAX_SESSIONS); end an unused session with HTTP DELETE or retry after idle sessions expire", l.max))
			return nil, false
		}
		// mcp-go registers the session before ServeHTTP returns, so the
		// reservation is held exactly until the session is counted as live.
		l.pending++
		return func() {
			l.mu.Lock()
			l.pending--
			l.mu.Unlock()
		}, true
	default:
		return nothing, true
	}
}

func isInitialize(r *http.Request) bool {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg struct {
		Method string `json:"method"`
	}
	return json.Unmarshal(body, &msg) == nil && msg.Method == "initialize"
}
