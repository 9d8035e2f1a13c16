package httpguard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

// sessionHeader is the Streamable HTTP session header.
const sessionHeader = "Mcp-Session-Id"

// SessionLimiter knows the live MCP sessions from the server's register and
// unregister hooks (the only place that sees every way a session ends:
// DELETE, idle expiry, shutdown), and what each is doing. With it the guard
//   - keeps at most max sessions live, and at most perClient per client (its
//     address and the clientInfo.name it sent in initialize). A new
//     initialize over either cap ends the longest-idle session that has no
//     request in flight and has been idle at least minIdle (that client's
//     own for the per-client cap), as idle expiry would, so that clients
//     that never send DELETE (CLIs that open a session per call) cannot lock
//     anyone out for long; an agent pausing to think keeps its sandboxes.
//     Only when no session qualifies is initialize refused;
//   - refuses a GET stream for an ID that is not a live session: mcp-go would
//     otherwise mint and register a brand-new session for it, a way around
//     both the cap and the session's owner;
//   - answers a DELETE of an ID that is not a live session with 404, where
//     mcp-go would answer 200 as if it had ended something.
type SessionLimiter struct {
	max, perClient int
	minIdle        time.Duration

	// shared: sessions may be live on other servers sharing a session
	// store, which a check behind the guard asks (see ShareSessions).
	shared bool

	mu      sync.Mutex
	live    map[string]*liveSession
	pending int // initialize requests admitted but not yet finished
	now     func() time.Time
}

// liveSession is what eviction looks at. An open GET stream counts as a
// request in flight: a connected client is not idle.
type liveSession struct {
	client     string // "" until its initialize has answered
	lastActive time.Time
	inFlight   int
}

// NewSessionLimiter allows at most max live sessions and perClient per
// client (a value <= 0 means no cap; GET streams are still checked), ending
// for a new session one idle at least minIdle.
func NewSessionLimiter(max, perClient int, minIdle time.Duration) *SessionLimiter {
	return &SessionLimiter{max: max, perClient: perClient, minIdle: minIdle, live: map[string]*liveSession{}, now: time.Now}
}

// AddHooks registers the limiter on the MCP server's hooks.
func (l *SessionLimiter) AddHooks(h *server.Hooks) {
	h.AddOnRegisterSession(func(_ context.Context, s server.ClientSession) {
		l.mu.Lock()
		l.live[s.SessionID()] = &liveSession{lastActive: l.now()}
		l.mu.Unlock()
	})
	h.AddOnUnregisterSession(func(_ context.Context, s server.ClientSession) {
		l.mu.Lock()
		delete(l.live, s.SessionID())
		l.mu.Unlock()
	})
}

// ShareSessions tells the limiter that other servers serve the same
// sessions: a GET or DELETE for a session this one does not know is passed
// on, for the session store to judge, rather than answered 404.
func (l *SessionLimiter) ShareSessions() { l.shared = true }

// Live returns the number of live sessions.
func (l *SessionLimiter) Live() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live)
}

// enter marks a request of session id in flight; ok is false when id is not
// a live session.
func (l *SessionLimiter) enter(id string) (leave func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.live[id]
	if s == nil {
		return nil, false
	}
	s.inFlight++
	s.lastActive = l.now()
	return func() {
		l.mu.Lock()
		s.inFlight--
		s.lastActive = l.now()
		l.mu.Unlock()
	}, true
}

// admit decides whether r may proceed. release must be called when the
// request is done. A POST body must already be buffered.
func (l *SessionLimiter) admit(g *Guard, next http.Handler, w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	nothing := func() {}
	id := r.Header.Get(sessionHeader)
	switch r.Method {
	case http.MethodGet, http.MethodDelete:
		if id == "" {
			what := "a GET stream"
			if r.Method == http.MethodDelete {
				what = "a DELETE"
			}
			g.reject(w, r, http.StatusBadRequest, codeInvalidRequest,
				what+" needs the Mcp-Session-Id header returned by initialize")
			return nil, false
		}
		leave, ok := l.enter(id)
		if !ok && l.shared {
			return nothing, true
		}
		if !ok {
			g.reject(w, r, http.StatusNotFound, codeInvalidRequest,
				"unknown or ended session: send initialize to start a new one")
			return nil, false
		}
		return leave, true
	case http.MethodPost:
		body, init := initializeClient(r)
		if !init {
			if leave, ok := l.enter(id); ok {
				return leave, true
			}
			return nothing, true // mcp-go answers unknown sessions with 404
		}
		client := clientKey(r, body)
		victims, refusal := l.makeRoom(client)
		if refusal != "" {
			w.Header().Set("Retry-After", "10")
			g.reject(w, r, http.StatusServiceUnavailable, codeServerError, refusal)
			return nil, false
		}
		for _, v := range victims {
			g.log.Warn("ending the longest-idle session to make room for a new one", "session", v.id, "client", v.client,
				"idle", l.now().Sub(v.lastActive).Round(time.Second), "new_client", client)
			endSession(next, v.id)
		}
		// mcp-go registers the session before ServeHTTP returns, so the
		// reservation is held exactly until the session is counted as live.
		return func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.pending--
			if s := l.live[w.Header().Get(sessionHeader)]; s != nil {
				s.client, s.lastActive = client, l.now()
			}
		}, true
	default:
		return nothing, true
	}
}

type victim struct {
	id, client string
	lastActive time.Time
}

// makeRoom reserves a place for a new session of client, choosing the
// sessions to end for it (removed from the count at once, so concurrent
// initialize requests cannot all count the same place), or says why not.
func (l *SessionLimiter) makeRoom(client string) (victims []victim, refusal string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perClient > 0 {
		n := 0
		for _, s := range l.live {
			if s.client == client {
				n++
			}
		}
		if n >= l.perClient {
			v, ok := l.idlest(client)
			if !ok {
				return nil, fmt.Sprintf("session limit reached: this client (%s) already has %d live sessions, the most one client may hold (--max-sessions-per-client, MCP_SANDBOX_MAX_SESSIONS_PER_CLIENT), and none is idle (no request or stream open for %v, --session-evict-idle) to make room; end one with HTTP DELETE, or retry later", client, n, l.minIdle)
			}
			victims = append(victims, v)
		}
	}
	if l.max > 0 && len(l.live)+l.pending >= l.max {
		v, ok := l.idlest("")
		if !ok {
			return nil, fmt.Sprintf("session limit reached: this server allows %d live sessions (--max-sessions, MCP_SANDBOX_MAX_SESSIONS) and none is idle (no request or stream open for %v, --session-evict-idle) to make room; end an unused session with HTTP DELETE, or retry later", l.max, l.minIdle)
		}
		victims = append(victims, v)
	}
	l.pending++
	return victims, ""
}

// idlest picks and unlists the session idle longest, at least minIdle,
// with no request in flight, of client (any client when ""). Sessions still
// initializing are never picked.
func (l *SessionLimiter) idlest(client string) (victim, bool) {
	var best victim
	found := false
	now := l.now()
	for id, s := range l.live {
		if s.inFlight > 0 || s.client == "" || (client != "" && s.client != client) || now.Sub(s.lastActive) < l.minIdle {
			continue
		}
		if !found || s.lastActive.Before(best.lastActive) {
			best, found = victim{id: id, client: s.client, lastActive: s.lastActive}, true
		}
	}
	if found {
		delete(l.live, best.id)
	}
	return best, found
}

// endSession ends a session the way a client's DELETE does, so its
// sandboxes are released through the same unregister hooks.
func endSession(next http.Handler, id string) {
	r, _ := http.NewRequest(http.MethodDelete, "/mcp", nil)
	r.Header.Set(sessionHeader, id)
	next.ServeHTTP(discardResponse{header: http.Header{}}, r)
}

type discardResponse struct{ header http.Header }

func (d discardResponse) Header() http.Header         { return d.header }
func (d discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d discardResponse) WriteHeader(int)             {}

// ClientKey names the client of an initialize request as the per-client
// cap does (its address and clientInfo.name), leaving the body to be read
// again: for a cap that servers sharing a session store count together.
func ClientKey(r *http.Request) string {
	body, _ := initializeClient(r)
	return clientKey(r, body)
}

// clientKey names the client for the per-client cap: its address (all
// loopback peers share one) and the name it gives in initialize. Behind a
// proxy the address is the one the proxy saw, the last X-Forwarded-For
// entry (the nearest proxy appends it); a client could put another there,
// as it can send another name: the cap keeps clients that play along from
// crowding each other out, it is not a barrier.
func clientKey(r *http.Request, body []byte) string {
	var msg struct {
		Params struct {
			ClientInfo struct {
				Name string `json:"name"`
			} `json:"clientInfo"`
		} `json:"params"`
	}
	json.Unmarshal(body, &msg)
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || host == "" {
		host = "local"
	}
	if fwd := r.Header.Values("X-Forwarded-For"); len(fwd) > 0 {
		last := fwd[len(fwd)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if ip := net.ParseIP(strings.TrimSpace(last)); ip != nil {
			host = ip.String()
		}
	}
	name := msg.Params.ClientInfo.Name
	if len(name) > 64 {
		name = name[:64]
	}
	return fmt.Sprintf("%q@%s", name, host)
}

// initializeClient reports whether r is an initialize request, and returns
// its body.
func initializeClient(r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg struct {
		Method string `json:"method"`
	}
	return body, json.Unmarshal(body, &msg) == nil && msg.Method == "initialize"
}
