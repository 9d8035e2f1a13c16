// Package e2bfake is a fake of E2B: a real HTTP server that speaks E2B's
// control-plane REST API and the envd daemon's protocols (Connect RPC for
// processes and the file system, plain HTTP for file transfer) closely enough
// for E2B's official JS SDK and for the providers/e2b driver.
//
// Each fake sandbox is a temporary directory; commands really run there (in
// their own process group, with a minimal environment), but on this machine:
// the fake gives no isolation and must only run trusted test code.
//
// One listener serves both planes, as E2B's own proxy does for IP hosts:
// requests carrying an `E2b-Sandbox-Id` header (or a `49983-<id>.` host)
// go to that sandbox's envd, the rest to the API. Point clients at it with
//
//	E2B_API_URL=http://127.0.0.1:<port>
//	E2B_SANDBOX_URL=http://127.0.0.1:<port>
//	E2B_API_KEY=<Options.APIKey, or anything when that is empty>
//
// The sandbox's home directory (the default cwd, and what relative paths
// resolve against) is its temp dir; absolute paths must lie inside it.
package e2bfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

// EnvdVersion is the envd version the fake reports (E2B infra's current one);
// the SDK gates features on it.
const EnvdVersion = "0.6.13"

// EnvdPort is the port envd listens on inside a real sandbox.
const EnvdPort = 49983

// Options configure a Server. The zero value is usable.
type Options struct {
	// APIKey, when set, is the only X-API-Key accepted; when empty any
	// non-empty key is.
	APIKey string
	// BaseDir holds the sandboxes' directories; empty means a new temp dir
	// that Close removes.
	BaseDir string
	// MaxTimeout caps a sandbox's timeout, as a team's plan does (default 1h).
	MaxTimeout time.Duration
	// KeepaliveInterval, when set, replaces the interval clients ask for in
	// Keepalive-Ping-Interval (seconds), so tests need not wait that long.
	KeepaliveInterval time.Duration
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
}

// Server is the fake. Use it as an http.Handler (httptest.NewServer) and
// Close it when done to kill every sandbox.
type Server struct {
	opts  Options
	boxes *fakebox.Boxes
	api   *http.ServeMux
	envd  *http.ServeMux
	// faults are armed by the methods in faults.go.
	faults fakebox.Faults

	mu        sync.Mutex
	sandboxes map[string]*sandbox
	creates   int // create requests seen, for tests
}

// New makes a fake server.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, sandboxes: map[string]*sandbox{}}
	if s.opts.MaxTimeout <= 0 {
		s.opts.MaxTimeout = time.Hour
	}
	if s.opts.Logger == nil {
		s.opts.Logger = slog.New(slog.DiscardHandler)
	}
	boxes, err := fakebox.New(s.opts.BaseDir)
	if err != nil {
		return nil, err
	}
	s.boxes = boxes
	s.api = s.apiMux()
	s.envd = s.envdMux()
	return s, nil
}

// Close kills every sandbox and removes the directories the fake made.
func (s *Server) Close() error {
	s.mu.Lock()
	all := make([]*sandbox, 0, len(s.sandboxes))
	for id, sb := range s.sandboxes {
		all = append(all, sb)
		delete(s.sandboxes, id)
	}
	s.mu.Unlock()
	for _, sb := range all {
		sb.kill()
	}
	return s.boxes.Close()
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.opts.Logger.Debug("e2bfake", "method", r.Method, "path", r.URL.Path, "sandbox", r.Header.Get("E2b-Sandbox-Id"))
	if strings.HasPrefix(r.URL.Path, "/_fake/") {
		s.controlHandler(w, r)
		return
	}
	if d := s.faults.Latency(); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if id := sandboxIDFromRequest(r); id != "" {
		s.serveEnvd(w, r, id)
		return
	}
	if r.URL.Path == "/health" {
		w.WriteHeader(http.StatusOK)
		return
	}
	key := r.Header.Get("X-API-Key")
	if key == "" || (s.opts.APIKey != "" && key != s.opts.APIKey) {
		apiError(w, http.StatusUnauthorized, "Invalid API key, please visit https://e2b.dev/docs/api-key for more information.")
		return
	}
	if status, _ := s.faults.TakeRequest(r.URL.Path); status != 0 {
		apiError(w, status, "injected failure")
		return
	}
	s.api.ServeHTTP(w, r)
}

// sandboxIDFromRequest routes like E2B's proxy: by header, or by a
// `<port>-<id>.<domain>` host.
func sandboxIDFromRequest(r *http.Request) string {
	if id := r.Header.Get("E2b-Sandbox-Id"); id != "" {
		return id
	}
	host := r.Host
	if h, _, ok := strings.Cut(host, "."); ok {
		if port, id, ok := strings.Cut(h, "-"); ok && port == strconv.Itoa(EnvdPort) {
			return id
		}
	}
	return ""
}

// apiError writes E2B's error body; the SDK reads the status from "code".
func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]any{"code": status, "message": fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, id string) {
	apiError(w, http.StatusNotFound, "Sandbox %q doesn't exist or you don't have access to it", id)
}

// sandbox is one fake sandbox: a fakebox.Box (ID, Home, Env, processes)
// and what E2B keeps beside it.
type sandbox struct {
	*fakebox.Box
	boxes      *fakebox.Boxes
	TemplateID string
	Alias      string
	Metadata   map[string]string
	Token      string
	StartedAt  time.Time

	mu     sync.Mutex
	endAt  time.Time
	timer  *time.Timer
	procs  map[uint32]*process
	killed bool
}

func (sb *sandbox) EndAt() time.Time {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.endAt
}

// kill ends every process and removes the sandbox's directory.
func (sb *sandbox) kill() {
	sb.mu.Lock()
	sb.killed = true
	if sb.timer != nil {
		sb.timer.Stop()
	}
	sb.mu.Unlock()
	sb.boxes.Remove(sb.ID)
}

// SandboxInfo is what tests can see of a running fake sandbox.
type SandboxInfo struct {
	ID         string
	TemplateID string
	Metadata   map[string]string
	EnvVars    map[string]string
	Dir        string
	StartedAt  time.Time
	EndAt      time.Time
}

// Sandboxes lists the running sandboxes, oldest first.
func (s *Server) Sandboxes() []SandboxInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SandboxInfo, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		out = append(out, SandboxInfo{ID: sb.ID, TemplateID: sb.TemplateID, Metadata: sb.Metadata, EnvVars: sb.Env,
			Dir: sb.Home, StartedAt: sb.StartedAt, EndAt: sb.EndAt()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// CreateRequests counts create requests received (failed ones included).
func (s *Server) CreateRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates
}

func (s *Server) lookup(id string) *sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sandboxes[id]
}

func (s *Server) remove(id string) *sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb := s.sandboxes[id]
	delete(s.sandboxes, id)
	return sb
}

// setTimeout makes the sandbox die timeout from now (or no earlier than
// that, when onlyExtend).
func (s *Server) setTimeout(sb *sandbox, timeout time.Duration, onlyExtend bool) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	end := time.Now().Add(timeout)
	if onlyExtend && end.Before(sb.endAt) {
		return
	}
	sb.endAt = end
	if sb.timer != nil {
		sb.timer.Stop()
	}
	sb.timer = time.AfterFunc(timeout, func() {
		if s.remove(sb.ID) != nil {
			sb.kill()
		}
	})
}

func (s *Server) keepaliveInterval(header string) time.Duration {
	secs, err := strconv.Atoi(header)
	if err != nil || secs <= 0 {
		return 0
	}
	if s.opts.KeepaliveInterval > 0 {
		return s.opts.KeepaliveInterval
	}
	return time.Duration(secs) * time.Second
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// --- control plane -------------------------------------------------------

func (s *Server) apiMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /v2/sandboxes", func(w http.ResponseWriter, r *http.Request) { s.create(w, r, 300) })
	m.HandleFunc("POST /sandboxes", func(w http.ResponseWriter, r *http.Request) { s.create(w, r, 15) })
	m.HandleFunc("GET /v2/sandboxes", s.list)
	m.HandleFunc("GET /sandboxes", s.list)
	m.HandleFunc("GET /sandboxes/{id}", s.get)
	m.HandleFunc("DELETE /sandboxes/{id}", s.kill)
	m.HandleFunc("POST /sandboxes/{id}/timeout", s.timeout)
	m.HandleFunc("POST /sandboxes/{id}/refreshes", s.refresh)
	m.HandleFunc("POST /v2/sandboxes/{id}/connect", s.connect)
	m.HandleFunc("POST /sandboxes/{id}/connect", s.connect)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "%s %s is not implemented by this fake", r.Method, r.URL.Path)
	})
	return m
}

type newSandbox struct {
	TemplateID string            `json:"templateID"`
	Timeout    *int              `json:"timeout"`
	Metadata   map[string]string `json:"metadata"`
	EnvVars    map[string]string `json:"envVars"`
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, defaultTimeout int) {
	s.mu.Lock()
	s.creates++
	s.mu.Unlock()
	failStatus, lost, _ := s.faults.TakeCreate()
	if failStatus != 0 && !lost {
		apiError(w, failStatus, "injected failure")
		return
	}
	var req newSandbox
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid request body: %v", err)
		return
	}
	if req.TemplateID == "" {
		apiError(w, http.StatusBadRequest, "templateID is required")
		return
	}
	timeout := defaultTimeout
	if req.Timeout != nil {
		timeout = *req.Timeout
	}
	if timeout <= 0 {
		apiError(w, http.StatusBadRequest, "Timeout must be greater than 0")
		return
	}
	if time.Duration(timeout)*time.Second > s.opts.MaxTimeout {
		apiError(w, http.StatusBadRequest, "Timeout cannot be greater than %d hours", int(s.opts.MaxTimeout.Hours()))
		return
	}
	box, err := s.boxes.CreateID(fakebox.RandomID(20), req.EnvVars) // 20 of [a-z0-9], like E2B's IDs
	if err != nil {
		apiError(w, http.StatusInternalServerError, "cannot create sandbox: %v", err)
		return
	}
	id := box.ID
	sb := &sandbox{Box: box, boxes: s.boxes, TemplateID: req.TemplateID, Metadata: req.Metadata,
		Token: randomToken(), StartedAt: time.Now().UTC(), procs: map[uint32]*process{}}
	if sb.Metadata == nil {
		sb.Metadata = map[string]string{}
	}
	s.mu.Lock()
	s.sandboxes[id] = sb
	s.mu.Unlock()
	s.setTimeout(sb, time.Duration(timeout)*time.Second, false)
	if failStatus != 0 { // created, but the answer is lost
		apiError(w, failStatus, "injected failure after the sandbox was created")
		return
	}
	writeJSON(w, http.StatusCreated, sandboxJSON(sb))
}

func sandboxJSON(sb *sandbox) map[string]any {
	return map[string]any{
		"sandboxID":          sb.ID,
		"templateID":         sb.TemplateID,
		"clientID":           "e2bfake",
		"envdVersion":        EnvdVersion,
		"envdAccessToken":    sb.Token,
		"trafficAccessToken": nil,
		"domain":             nil,
	}
}

func listedJSON(sb *sandbox) map[string]any {
	return map[string]any{
		"sandboxID":   sb.ID,
		"templateID":  sb.TemplateID,
		"clientID":    "e2bfake",
		"startedAt":   sb.StartedAt.Format(time.RFC3339Nano),
		"endAt":       sb.EndAt().UTC().Format(time.RFC3339Nano),
		"cpuCount":    2,
		"memoryMB":    512,
		"diskSizeMB":  1024,
		"state":       "running",
		"metadata":    sb.Metadata,
		"envdVersion": EnvdVersion,
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	sb := s.lookup(r.PathValue("id"))
	if sb == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	body := listedJSON(sb)
	body["envdAccessToken"] = sb.Token
	body["domain"] = nil
	writeJSON(w, http.StatusOK, body)
}

// list serves GET /v2/sandboxes (paged with limit and nextToken) and the
// legacy GET /sandboxes. The metadata filter is a query string of its own,
// with keys and values escaped once more, as the SDK sends it.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	want := map[string]string{}
	if m := q.Get("metadata"); m != "" {
		vals, err := url.ParseQuery(m)
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid metadata filter: %v", err)
			return
		}
		for k, vs := range vals {
			uk, err1 := url.QueryUnescape(k)
			uv, err2 := url.QueryUnescape(vs[0])
			if err1 != nil || err2 != nil {
				apiError(w, http.StatusBadRequest, "invalid metadata filter %q", m)
				return
			}
			want[uk] = uv
		}
	}
	if st := q.Get("state"); st != "" && !strings.Contains(st, "running") {
		writeJSON(w, http.StatusOK, []any{}) // the fake never pauses
		return
	}
	var match []*sandbox
	s.mu.Lock()
	for _, sb := range s.sandboxes {
		ok := true
		for k, v := range want {
			if sb.Metadata[k] != v {
				ok = false
				break
			}
		}
		if ok {
			match = append(match, sb)
		}
	}
	s.mu.Unlock()
	sort.Slice(match, func(i, j int) bool {
		if !match[i].StartedAt.Equal(match[j].StartedAt) {
			return match[i].StartedAt.Before(match[j].StartedAt)
		}
		return match[i].ID < match[j].ID
	})
	if r.URL.Path == "/v2/sandboxes" {
		start := 0
		if t := q.Get("nextToken"); t != "" {
			n, err := strconv.Atoi(t)
			if err != nil || n < 0 {
				apiError(w, http.StatusBadRequest, "invalid nextToken %q", t)
				return
			}
			start = min(n, len(match))
		}
		limit := 100
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > 100 {
				apiError(w, http.StatusBadRequest, "limit must be between 1 and 100")
				return
			}
			limit = n
		}
		end := min(start+limit, len(match))
		if end < len(match) {
			w.Header().Set("X-Next-Token", strconv.Itoa(end))
		}
		w.Header().Set("X-Total-Running", strconv.Itoa(len(match)))
		match = match[start:end]
	}
	out := make([]map[string]any, 0, len(match))
	for _, sb := range match {
		out = append(out, listedJSON(sb))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) kill(w http.ResponseWriter, r *http.Request) {
	sb := s.remove(r.PathValue("id"))
	if sb == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	sb.kill()
	w.WriteHeader(http.StatusNoContent)
}

// decodeSeconds reads {"<field>": seconds} and checks the bounds.
func (s *Server) decodeSeconds(w http.ResponseWriter, r *http.Request, field string, def int) (time.Duration, bool) {
	var body map[string]*int
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil && err != io.EOF {
		apiError(w, http.StatusBadRequest, "invalid request body: %v", err)
		return 0, false
	}
	n := def
	if v := body[field]; v != nil {
		n = *v
	} else if def < 0 {
		apiError(w, http.StatusBadRequest, "%s is required", field)
		return 0, false
	}
	if n < 0 || time.Duration(n)*time.Second > s.opts.MaxTimeout {
		apiError(w, http.StatusBadRequest, "%s must be between 0 and %d seconds", field, int(s.opts.MaxTimeout.Seconds()))
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

func (s *Server) timeout(w http.ResponseWriter, r *http.Request) {
	sb := s.lookup(r.PathValue("id"))
	if sb == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	d, ok := s.decodeSeconds(w, r, "timeout", -1)
	if !ok {
		return
	}
	s.setTimeout(sb, d, false)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	sb := s.lookup(r.PathValue("id"))
	if sb == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	d, ok := s.decodeSeconds(w, r, "duration", 0)
	if !ok {
		return
	}
	s.setTimeout(sb, d, true)
	w.WriteHeader(http.StatusNoContent)
}

// connect answers 200 with the connection details of a running sandbox and
// extends (never shortens) its timeout.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	sb := s.lookup(r.PathValue("id"))
	if sb == nil {
		notFound(w, r.PathValue("id"))
		return
	}
	d, ok := s.decodeSeconds(w, r, "timeout", 300)
	if !ok {
		return
	}
	s.setTimeout(sb, d, true)
	writeJSON(w, http.StatusOK, sandboxJSON(sb))
}
