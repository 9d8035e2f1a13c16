// Package daytonafake is a fake of Daytona: a real HTTP server that speaks
// Daytona's REST API (under /api) and the toolbox API of the daemon inside
// each sandbox (under /toolbox/{sandboxId}, the toolboxProxyUrl every
// sandbox reports) closely enough for Daytona's official TypeScript SDK and
// for the providers/daytona driver.
//
// Each fake sandbox is a fakebox.Box: a temporary directory where commands
// really run (in their own process group, with a minimal environment), but
// on this machine: the fake gives no isolation and must only run trusted
// test code. Paths given to the file routes resolve inside the directory
// (relative ones from it, absolute ones only below it); symlinks cannot lead
// out. Stopping a sandbox ends its commands' process groups and keeps its
// files; processes that left their group run until it is deleted.
//
// Point clients at it with
//
//	DAYTONA_API_URL=http://127.0.0.1:<port>/api
//	DAYTONA_API_KEY=<Options.APIKey, or anything when that is empty>
//
// Where Daytona's daemon keeps shell state between the commands of one
// session (cd, variables), the fake runs each command in a fresh shell, one
// after the other.
package daytonafake

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// APIKey, when set, is the only bearer token accepted; when empty any
	// non-empty one is.
	APIKey string
	// BaseDir holds the sandboxes' directories; empty means a new temp dir
	// that Close removes (fakebox.New).
	BaseDir string
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
}

// Server is the fake. Use it as an http.Handler (httptest.NewServer) and
// Close it when done to kill every sandbox.
type Server struct {
	opts    Options
	boxes   *fakebox.Boxes
	logDir  string // session command logs (the daemon keeps them in the sandbox)
	api     *http.ServeMux
	toolbox *http.ServeMux
	faults  fakebox.Faults

	mu        sync.Mutex
	sandboxes map[string]*sandbox
	creates   int
	requests  int // API requests seen
}

// New makes a fake server.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, sandboxes: map[string]*sandbox{}}
	if s.opts.Logger == nil {
		s.opts.Logger = slog.New(slog.DiscardHandler)
	}
	boxes, err := fakebox.New(opts.BaseDir)
	if err != nil {
		return nil, err
	}
	s.boxes = boxes
	if s.logDir, err = os.MkdirTemp("", "daytonafake-logs-"); err != nil {
		boxes.Close()
		return nil, err
	}
	s.api = s.apiMux()
	s.toolbox = s.toolboxMux()
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
		sb.stopAll()
	}
	os.RemoveAll(s.logDir)
	return s.boxes.Close()
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.opts.Logger.Debug("daytonafake", "method", r.Method, "path", r.URL.Path)
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
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || key == "" || (s.opts.APIKey != "" && key != s.opts.APIKey) {
		if strings.HasPrefix(r.URL.Path, "/toolbox/") {
			toolboxError(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "invalid or missing token")
		} else {
			apiError(w, r, http.StatusUnauthorized, "Invalid credentials")
		}
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/api/"):
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		if status, retryAfter := s.faults.TakeRequest(r.URL.Path); status != 0 {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			apiError(w, r, status, "injected failure")
			return
		}
		s.api.ServeHTTP(w, r)
	case strings.HasPrefix(r.URL.Path, "/toolbox/"):
		s.serveToolbox(w, r)
	default:
		apiError(w, r, http.StatusNotFound, "Cannot %s %s", r.Method, r.URL.Path)
	}
}

// apiError writes the API's error body (Nest's exception filter).
func apiError(w http.ResponseWriter, r *http.Request, status int, format string, args ...any) {
	writeJSON(w, status, map[string]any{
		"path": r.URL.Path, "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"statusCode": status, "error": http.StatusText(status), "message": fmt.Sprintf(format, args...),
	})
}

// toolboxError writes the daemon's error body.
func toolboxError(w http.ResponseWriter, r *http.Request, status int, code, format string, args ...any) {
	writeJSON(w, status, map[string]any{
		"statusCode": status, "message": fmt.Sprintf(format, args...), "code": code,
		"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "path": r.URL.Path, "method": r.Method,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// sandbox is one fake sandbox: a fakebox.Box (ID, Home, Env, processes)
// and what Daytona keeps about it.
type sandbox struct {
	*fakebox.Box
	Name      string
	Snapshot  string
	Target    string
	Labels    map[string]string
	AutoStop  int
	CreatedAt time.Time

	mu       sync.Mutex
	state    string
	stuck    bool // stays "creating" (an injected fault)
	updated  time.Time
	sessions map[string]*session
}

func (sb *sandbox) State() string {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.state
}

func (sb *sandbox) setState(st string) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.state, sb.updated = st, time.Now().UTC()
}

// stopAll ends the sandbox's sessions and every command they run (their
// process groups); files stay.
func (sb *sandbox) stopAll() {
	sb.mu.Lock()
	sessions := sb.sessions
	sb.sessions = map[string]*session{}
	sb.mu.Unlock()
	for _, se := range sessions {
		se.kill()
	}
}

// SandboxInfo is what tests can see of a fake sandbox.
type SandboxInfo struct {
	ID        string
	State     string
	Snapshot  string
	Target    string
	Env       map[string]string
	Labels    map[string]string
	AutoStop  int
	Dir       string
	CreatedAt time.Time
}

// Sandboxes lists the sandboxes not deleted, oldest first.
func (s *Server) Sandboxes() []SandboxInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SandboxInfo, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		out = append(out, SandboxInfo{ID: sb.ID, State: sb.State(), Snapshot: sb.Snapshot, Target: sb.Target,
			Env: sb.Env, Labels: sb.Labels, AutoStop: sb.AutoStop, Dir: sb.Home, CreatedAt: sb.CreatedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// APIRequests counts requests to the API (under /api) with a valid key.
func (s *Server) APIRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// CreateRequests counts create requests received (failed ones included).
func (s *Server) CreateRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates
}

func (s *Server) lookup(idOrName string) *sandbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sb, ok := s.sandboxes[idOrName]; ok {
		return sb
	}
	for _, sb := range s.sandboxes {
		if sb.Name == idOrName {
			return sb
		}
	}
	return nil
}

// --- API -----------------------------------------------------------------

func (s *Server) apiMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /api/sandbox", s.create)
	m.HandleFunc("GET /api/sandbox", s.list)
	m.HandleFunc("GET /api/sandbox/{id}", s.withSandbox(s.get))
	m.HandleFunc("DELETE /api/sandbox/{id}", s.delete)
	m.HandleFunc("POST /api/sandbox/{id}/start", s.withSandbox(s.start))
	m.HandleFunc("POST /api/sandbox/{id}/stop", s.withSandbox(s.stop))
	m.HandleFunc("PUT /api/sandbox/{id}/labels", s.withSandbox(s.putLabels))
	m.HandleFunc("GET /api/sandbox/{id}/toolbox-proxy-url", s.withSandbox(func(w http.ResponseWriter, r *http.Request, sb *sandbox) {
		writeJSON(w, http.StatusOK, map[string]string{"url": toolboxURL(r)})
	}))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, r, http.StatusNotFound, "Cannot %s %s (not implemented by this fake)", r.Method, r.URL.Path)
	})
	return m
}

func (s *Server) withSandbox(h func(http.ResponseWriter, *http.Request, *sandbox)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sb := s.lookup(r.PathValue("id"))
		if sb == nil {
			apiError(w, r, http.StatusNotFound, "Sandbox with ID or name %s not found", r.PathValue("id"))
			return
		}
		h(w, r, sb)
	}
}

// toolboxURL is the toolboxProxyUrl: this server, as the client reached it.
func toolboxURL(r *http.Request) string {
	return "http://" + r.Host + "/toolbox"
}

type createBody struct {
	Name             string            `json:"name"`
	Snapshot         string            `json:"snapshot"`
	User             string            `json:"user"`
	Env              map[string]string `json:"env"`
	Labels           map[string]string `json:"labels"`
	Target           string            `json:"target"`
	AutoStopInterval *int              `json:"autoStopInterval"`
	CPU              *int              `json:"cpu"`
	Memory           *int              `json:"memory"`
	Disk             *int              `json:"disk"`
	GPU              *int              `json:"gpu"`
	BuildInfo        *struct {
		DockerfileContent string `json:"dockerfileContent"`
	} `json:"buildInfo"`
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.creates++
	s.mu.Unlock()
	failStatus, lost, stuck := s.faults.TakeCreate()
	if failStatus != 0 && !lost {
		apiError(w, r, failStatus, "injected failure")
		return
	}
	var req createBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		apiError(w, r, http.StatusBadRequest, "invalid request body: %v", err)
		return
	}
	if req.Snapshot != "" && req.BuildInfo != nil {
		apiError(w, r, http.StatusBadRequest, "Cannot specify a snapshot when using a build info entry")
		return
	}
	if req.BuildInfo == nil && (req.CPU != nil || req.Memory != nil || req.Disk != nil || req.GPU != nil) {
		apiError(w, r, http.StatusBadRequest, "Cannot specify Sandbox resources when using a snapshot")
		return
	}
	for k := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			apiError(w, r, http.StatusBadRequest, "invalid environment variable name %q", k)
			return
		}
	}
	box, err := s.boxes.CreateID(uuid.NewString(), req.Env)
	if err != nil {
		apiError(w, r, http.StatusInternalServerError, "cannot create sandbox: %v", err)
		return
	}
	snapshot := req.Snapshot
	if req.BuildInfo != nil {
		snapshot = strings.TrimSpace(strings.TrimPrefix(req.BuildInfo.DockerfileContent, "FROM "))
	}
	if snapshot == "" {
		snapshot = "daytonaio/sandbox:latest"
	}
	autoStop := 15
	if req.AutoStopInterval != nil {
		autoStop = *req.AutoStopInterval
	}
	name := req.Name
	if name == "" {
		name = box.ID
	}
	now := time.Now().UTC()
	sb := &sandbox{Box: box, Name: name, Snapshot: snapshot, Target: req.Target, Labels: req.Labels,
		AutoStop: autoStop, CreatedAt: now, state: "started", updated: now, stuck: stuck, sessions: map[string]*session{}}
	if sb.stuck {
		sb.state = "creating"
	}
	if sb.Labels == nil {
		sb.Labels = map[string]string{}
	}
	s.mu.Lock()
	s.sandboxes[sb.ID] = sb
	s.mu.Unlock()
	if failStatus != 0 { // created, but the answer is lost
		apiError(w, r, failStatus, "injected failure after the sandbox was created")
		return
	}
	writeJSON(w, http.StatusOK, sb.dto(r))
}

func (sb *sandbox) dto(r *http.Request) map[string]any {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	// Commands here run with their own TMPDIR (see fakebox), so the
	// sandbox's environment has it, as a sandbox made with it would.
	env := map[string]string{"TMPDIR": sb.Tmp}
	for k, v := range sb.Env {
		env[k] = v
	}
	return map[string]any{
		"id": sb.ID, "organizationId": "daytonafake-org", "name": sb.Name, "snapshot": sb.Snapshot,
		"user": "daytona", "env": env, "labels": sb.Labels, "public": false, "networkBlockAll": false,
		"target": sb.Target, "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
		"state": sb.state, "desiredState": desired(sb.state),
		"autoStopInterval": sb.AutoStop, "autoArchiveInterval": 10080, "autoDeleteInterval": -1,
		"createdAt": sb.CreatedAt.Format(time.RFC3339Nano), "updatedAt": sb.updated.Format(time.RFC3339Nano),
		"toolboxProxyUrl": toolboxURL(r),
	}
}

func desired(state string) string {
	switch state {
	case "stopped", "stopping":
		return "stopped"
	case "destroyed", "destroying":
		return "destroyed"
	}
	return "started"
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, sb *sandbox) {
	writeJSON(w, http.StatusOK, sb.dto(r))
}

// list serves GET /api/sandbox: a labels filter (a JSON object), limit and
// cursor (an offset, as an opaque string).
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	want := map[string]string{}
	if l := q.Get("labels"); l != "" {
		if err := json.Unmarshal([]byte(l), &want); err != nil {
			apiError(w, r, http.StatusBadRequest, "labels must be a JSON object of strings: %v", err)
			return
		}
	}
	limit := 100
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 200 {
			apiError(w, r, http.StatusBadRequest, "limit must be between 1 and 200")
			return
		}
		limit = n
	}
	start := 0
	if c := q.Get("cursor"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			apiError(w, r, http.StatusBadRequest, "invalid cursor %q", c)
			return
		}
		start = n
	}
	var match []*sandbox
	s.mu.Lock()
	for _, sb := range s.sandboxes {
		ok := true
		for k, v := range want {
			if sb.Labels[k] != v {
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
		if !match[i].CreatedAt.Equal(match[j].CreatedAt) {
			return match[i].CreatedAt.Before(match[j].CreatedAt)
		}
		return match[i].ID < match[j].ID
	})
	start = min(start, len(match))
	end := min(start+limit, len(match))
	items := make([]map[string]any, 0, end-start)
	for _, sb := range match[start:end] {
		d := sb.dto(r)
		delete(d, "env") // list items leave it out
		items = append(items, d)
	}
	var next any
	if end < len(match) {
		next = strconv.Itoa(end)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "nextCursor": next})
}

// delete is soft in Daytona: the answer still shows the sandbox, then it is
// gone.
func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	sb := s.sandboxes[r.PathValue("id")]
	delete(s.sandboxes, r.PathValue("id"))
	s.mu.Unlock()
	if sb == nil {
		apiError(w, r, http.StatusNotFound, "Sandbox with ID or name %s not found", r.PathValue("id"))
		return
	}
	d := sb.dto(r)
	d["desiredState"] = "destroyed"
	sb.stopAll()
	s.boxes.Remove(sb.ID)
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) start(w http.ResponseWriter, r *http.Request, sb *sandbox) {
	switch st := sb.State(); st {
	case "started", "stopped":
		sb.mu.Lock()
		stuck := sb.stuck
		sb.mu.Unlock()
		if !stuck {
			sb.setState("started")
		}
	default:
		apiError(w, r, http.StatusBadRequest, "Sandbox is not in a state that can be started (%s)", st)
		return
	}
	writeJSON(w, http.StatusOK, sb.dto(r))
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request, sb *sandbox) {
	switch st := sb.State(); st {
	case "started":
		sb.stopAll()
		sb.setState("stopped")
	case "stopped":
	default:
		apiError(w, r, http.StatusBadRequest, "Sandbox is not started (%s)", st)
		return
	}
	writeJSON(w, http.StatusOK, sb.dto(r))
}

func (s *Server) putLabels(w http.ResponseWriter, r *http.Request, sb *sandbox) {
	var body struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.Labels == nil {
		apiError(w, r, http.StatusBadRequest, "body must be {\"labels\": {...}}")
		return
	}
	sb.mu.Lock()
	sb.Labels = body.Labels
	sb.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"labels": body.Labels})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
