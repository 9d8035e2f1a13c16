// Package httpguard makes the Streamable HTTP endpoint safe to expose: it
// checks Origin (against DNS rebinding), a bearer token, request body size and
// the number of live sessions before a request reaches the MCP handler, and it
// serves /healthz. It also holds the http.Server settings and the shutdown
// order that lets in-flight tool calls finish before sessions are cleaned up.
//
// Every rejection carries a JSON-RPC error body without an id (as the MCP
// transport spec allows) whose message says what was wrong and what to do.
package httpguard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBodyBytes caps a request body unless Config.MaxBodyBytes says
// otherwise. One JSON-RPC message carries at most one tool call; 8 MiB leaves
// room for a large write_file while bounding memory per request.
const DefaultMaxBodyBytes = 8 << 20

// HealthPath is the liveness endpoint for load balancers.
const HealthPath = "/healthz"

// Config is what the guard enforces. The zero value allows only local
// origins, requires no token, caps bodies at DefaultMaxBodyBytes and does not
// limit sessions.
type Config struct {
	// Token, when set, must be sent as "Authorization: Bearer <token>".
	Token string
	// Origins allows browser origins besides localhost, 127.0.0.1 and [::1]
	// (any port). Build it with ParseOrigins.
	Origins Origins
	// MaxBodyBytes caps a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BodyBudget caps the bytes of bodies held by requests in flight, all
	// together; 0 means 2 x MaxBodyBytes. A request that does not fit waits
	// up to BodyBudgetWait (0: DefaultBodyBudgetWait), then gets 503 with
	// Retry-After.
	BodyBudget     int64
	BodyBudgetWait time.Duration
	// Sessions, when set, caps live sessions and checks the session ID of
	// GET streams. Register its hooks on the MCP server.
	Sessions *SessionLimiter
	// Logger receives one line per rejected request (nil: slog.Default()).
	Logger *slog.Logger
}

// Guard wraps an MCP handler with the checks of its Config.
type Guard struct {
	cfg      Config
	tokenSum [sha256.Size]byte
	log      *slog.Logger
	bodies   *bodyBudget

	// draining is set by Drain: new requests get 503 and open GET streams
	// end, so http.Server.Shutdown only waits for in-flight calls.
	draining atomic.Bool
	streamMu sync.Mutex
	streams  map[*streamHandle]struct{}
}

type streamHandle struct{ cancel context.CancelFunc }

// New returns a Guard for cfg.
func New(cfg Config) *Guard {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.BodyBudget <= 0 {
		cfg.BodyBudget = 2 * cfg.MaxBodyBytes
	}
	cfg.BodyBudget = max(cfg.BodyBudget, cfg.MaxBodyBytes) // room for the largest body
	if cfg.BodyBudgetWait <= 0 {
		cfg.BodyBudgetWait = DefaultBodyBudgetWait
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Guard{cfg: cfg, tokenSum: sha256.Sum256([]byte(cfg.Token)), log: log, bodies: newBodyBudget(cfg.BodyBudget),
		streams: map[*streamHandle]struct{}{}}
}

// Handler returns an http.Handler that serves /healthz itself and passes
// every other request through the checks, in this order, to mcp: draining,
// Origin, bearer token, body size, sessions.
func (g *Guard) Handler(mcp http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == HealthPath {
			g.serveHealth(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/.well-known/") {
			// A 401 sends MCP clients looking here for OAuth metadata; a
			// 404 tells them there is none, so they report the 401 rather
			// than start an authorization flow this server cannot finish.
			http.Error(w, "this server has no OAuth metadata: send \"Authorization: Bearer <token>\"", http.StatusNotFound)
			return
		}
		if g.draining.Load() {
			w.Header().Set("Connection", "close")
			g.reject(w, r, http.StatusServiceUnavailable, codeServerError, "the server is shutting down; retry against another instance or after it restarts")
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && !g.cfg.Origins.Allows(origin) {
			g.reject(w, r, http.StatusForbidden, codeInvalidRequest, fmt.Sprintf(
				"Origin %q is not allowed: only localhost origins and those listed in --allowed-origins (MCP_SANDBOX_ALLOWED_ORIGINS) may call this server", origin))
			return
		}
		if g.cfg.Token != "" && !g.authorized(w, r) {
			return
		}
		if r.Method == http.MethodPost {
			release, ok := g.admitBody(w, r)
			if !ok {
				return
			}
			defer release()
			if !g.bufferBody(w, r) {
				return
			}
		}
		if g.cfg.Sessions != nil {
			release, ok := g.cfg.Sessions.admit(g, mcp, w, r)
			if !ok {
				return
			}
			defer release()
		}
		if r.Method == http.MethodGet {
			// A GET is a long-lived notification stream; Drain ends it.
			ctx, cancel := context.WithCancel(r.Context())
			h := g.trackStream(cancel)
			defer g.untrackStream(h)
			r = r.WithContext(ctx)
		}
		mcp.ServeHTTP(w, r)
	})
}

func (g *Guard) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if g.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "shutting down\n")
		return
	}
	io.WriteString(w, "ok\n")
}

// authorized checks the bearer token in constant time (over fixed-length
// digests, so the token's length does not leak either).
func (g *Guard) authorized(w http.ResponseWriter, r *http.Request) bool {
	header := r.Header.Get("Authorization")
	scheme, token, found := strings.Cut(header, " ")
	if header == "" || !found || !strings.EqualFold(scheme, "Bearer") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcp-sandbox"`)
		g.reject(w, r, http.StatusUnauthorized, codeInvalidRequest,
			"missing bearer token: send the header \"Authorization: Bearer <token>\" with the token the server was started with (MCP_SANDBOX_AUTH_TOKEN or --auth-token-file)")
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcp-sandbox", error="invalid_token"`)
		g.reject(w, r, http.StatusUnauthorized, codeInvalidRequest,
			"invalid bearer token: the Authorization header does not carry the token this server was started with")
		return false
	}
	return true
}

// admitBody holds the POST's body size (the cap when unknown) in the body
// budget until release, from before the body is read until the response is
// written: the body's copies live that long.
func (g *Guard) admitBody(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	n := g.cfg.MaxBodyBytes
	switch {
	case r.ContentLength > n:
		return func() {}, true // refused with 413 before it is read
	case r.ContentLength >= 0:
		n = r.ContentLength
	}
	if !g.bodies.acquire(r.Context(), n, g.cfg.BodyBudgetWait) {
		w.Header().Set("Retry-After", "5")
		g.reject(w, r, http.StatusServiceUnavailable, codeServerError, fmt.Sprintf(
			"the server is busy with other large requests (%d bytes of request bodies in flight, at most %d held at once): retry in a few seconds",
			g.bodies.inFlight(), g.cfg.BodyBudget))
		return nil, false
	}
	return func() { g.bodies.release(n) }, true
}

// bufferBody reads a POST body up to the cap, so that an oversized one gets
// a clear 413 instead of mcp-go's unbounded read, and later checks can look
// at the JSON-RPC method.
func (g *Guard) bufferBody(w http.ResponseWriter, r *http.Request) bool {
	limit := g.cfg.MaxBodyBytes
	tooLarge := func() bool {
		w.Header().Set("Connection", "close")
		g.reject(w, r, http.StatusRequestEntityTooLarge, codeInvalidRequest, fmt.Sprintf(
			"request body is larger than this server's limit of %d bytes (--max-body-bytes, MCP_SANDBOX_MAX_BODY_BYTES): send less per call, for example write a large file in several parts", limit))
		return false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	body, err := readBody(r, limit)
	if err != nil {
		g.reject(w, r, http.StatusBadRequest, codeParseError, "could not read the request body: "+err.Error())
		return false
	}
	if int64(len(body)) > limit {
		return tooLarge()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return true
}

// readBody reads up to limit+1 bytes, in one allocation when the length
// is known (io.ReadAll's doublings would allocate about twice the body).
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength < 0 {
		return io.ReadAll(io.LimitReader(r.Body, limit+1))
	}
	body := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		return nil, err
	}
	return body, nil
}

func (g *Guard) trackStream(cancel context.CancelFunc) *streamHandle {
	h := &streamHandle{cancel: cancel}
	g.streamMu.Lock()
	g.streams[h] = struct{}{}
	g.streamMu.Unlock()
	if g.draining.Load() {
		cancel()
	}
	return h
}

func (g *Guard) untrackStream(h *streamHandle) {
	h.cancel()
	g.streamMu.Lock()
	delete(g.streams, h)
	g.streamMu.Unlock()
}

// Drain makes the guard refuse new requests (503) and ends open GET streams.
// Requests already past the guard (tool calls in flight) are not touched.
func (g *Guard) Drain() {
	g.draining.Store(true)
	g.streamMu.Lock()
	defer g.streamMu.Unlock()
	for h := range g.streams {
		h.cancel()
	}
}

// JSON-RPC error codes used in rejection bodies.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeServerError    = -32000
)

func (g *Guard) reject(w http.ResponseWriter, r *http.Request, status, code int, message string) {
	g.log.Warn("http request rejected", "status", status, "method", r.Method, "path", r.URL.Path,
		"remote", r.RemoteAddr, "reason", message)
	writeError(w, status, code, message)
}

func writeError(w http.ResponseWriter, status, code int, message string) {
	body, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      nil,
		"error":   map[string]any{"code": code, "message": message},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
