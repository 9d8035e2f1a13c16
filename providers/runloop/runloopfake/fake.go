// Package runloopfake is a fake of Runloop (runloop.ai): a real HTTP server
// that speaks Runloop's devbox REST API (under /v1) closely enough for
// Runloop's official TypeScript SDK and for the providers/runloop driver.
//
// Devboxes, their commands and their files are providers/internal/fakebox
// sandboxes: each is a temporary directory, its home, where commands really
// run (in their own process group, with a minimal environment) on this
// machine, with no isolation but a private /tmp where the kernel allows
// (isolate.go): the fake must only run trusted test code. File calls are
// confined to the home directory (relative paths and "~/" resolve from it;
// absolute paths must lie inside it). This package is Runloop's wire
// protocol in front of it.
//
// Serve it with Server.HTTPServer, which speaks HTTP/1.1 and HTTP/2 over
// cleartext (h2c), since the SDK uses HTTP/2 by default. Point clients at it
// as Runloop's SDKs are configured:
//
//	RUNLOOP_BASE_URL=http://127.0.0.1:<port>
//	RUNLOOP_API_KEY=<Options.APIKey>
package runloopfake

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// APIKey, when set, is the only bearer token accepted; when empty any
	// non-empty token is.
	APIKey string
	// BaseDir holds the devboxes' directories; empty means a new temp dir
	// that Close removes.
	BaseDir string
	// ProvisionDelay is how long a new devbox stays in "provisioning".
	ProvisionDelay time.Duration
	// LongPoll caps how long a wait_for_status call holds before it
	// answers 408, as Runloop's own long polls do (default 25s).
	LongPoll time.Duration
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
}

// Server is the fake. Close it when done to kill every devbox.
type Server struct {
	opts    Options
	ownBase bool
	mux     *http.ServeMux
	boxes   *fakebox.Boxes
	faults  fakebox.Faults

	mu       sync.Mutex
	devboxes map[string]*devbox
	byKey    map[string]string // idempotency key (x-request-id) -> devbox ID
	order    []string          // devbox IDs, oldest first
	creates  int
	// isolate: commands run with a private /tmp (see isolate.go).
	isolate bool
}

// New makes a fake server.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, devboxes: map[string]*devbox{}, byKey: map[string]string{}}
	if s.opts.LongPoll <= 0 {
		s.opts.LongPoll = 25 * time.Second
	}
	if s.opts.Logger == nil {
		s.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if s.opts.BaseDir == "" {
		if base, ok := isolationBase(); ok {
			s.opts.BaseDir, s.ownBase, s.isolate = base, true, true
		}
	}
	boxes, err := fakebox.New(s.opts.BaseDir)
	if err != nil {
		return nil, err
	}
	s.boxes = boxes
	s.mux = s.routes()
	return s, nil
}

// HTTPServer returns an http.Server for the fake that speaks HTTP/1.1 and
// unencrypted HTTP/2 with prior knowledge, as Runloop's SDK uses for an
// http:// base URL.
func (s *Server) HTTPServer() *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: s, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
}

// Close kills every devbox's commands and removes the directories the fake made.
func (s *Server) Close() error {
	s.mu.Lock()
	all := make([]*devbox, 0, len(s.devboxes))
	for _, d := range s.devboxes {
		all = append(all, d)
	}
	s.mu.Unlock()
	for _, d := range all {
		d.shutdown("api_shutdown")
	}
	err := s.boxes.Close()
	if s.ownBase {
		err = os.RemoveAll(s.opts.BaseDir)
	}
	return err
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.opts.Logger.Debug("runloopfake", "method", r.Method, "path", r.URL.Path, "proto", r.Proto)
	if strings.HasPrefix(r.URL.Path, "/_fake/") {
		s.controlHandler(w, r)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" || (s.opts.APIKey != "" && token != s.opts.APIKey) {
		apiError(w, http.StatusUnauthorized, "Invalid API key: the bearer token was not recognised")
		return
	}
	if d := s.faults.Latency(); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if status, retryAfter := s.faults.TakeRequest(r.URL.Path); status != 0 {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		apiError(w, status, "injected failure")
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /v1/devboxes", s.create(false))
	m.HandleFunc("POST /v1/devboxes/create_and_await_running", s.create(true))
	m.HandleFunc("GET /v1/devboxes", s.list)
	m.HandleFunc("GET /v1/devboxes/{id}", s.withDevbox(false, s.get))
	m.HandleFunc("POST /v1/devboxes/{id}", s.withDevbox(false, s.update))
	m.HandleFunc("POST /v1/devboxes/{id}/wait_for_status", s.withDevbox(false, s.waitForStatus))
	m.HandleFunc("POST /v1/devboxes/{id}/shutdown", s.withDevbox(false, s.shutdown))
	m.HandleFunc("POST /v1/devboxes/{id}/keep_alive", s.withDevbox(true, s.keepAlive))
	m.HandleFunc("POST /v1/devboxes/{id}/execute_sync", s.withDevbox(true, s.executeSync))
	m.HandleFunc("POST /v1/devboxes/{id}/execute", s.withDevbox(true, s.execute))
	m.HandleFunc("POST /v1/devboxes/{id}/execute_async", s.withDevbox(true, s.executeAsync))
	m.HandleFunc("GET /v1/devboxes/{id}/executions/{eid}", s.withExecution(s.getExecution))
	m.HandleFunc("POST /v1/devboxes/{id}/executions/{eid}/wait_for_status", s.withExecution(s.waitExecution))
	m.HandleFunc("POST /v1/devboxes/{id}/executions/{eid}/kill", s.withExecution(s.killExecution))
	m.HandleFunc("POST /v1/devboxes/{id}/executions/{eid}/send_std_in", s.withExecution(s.sendStdin))
	m.HandleFunc("GET /v1/devboxes/{id}/executions/{eid}/stream_stdout_updates", s.withExecution(s.streamUpdates(stdout)))
	m.HandleFunc("GET /v1/devboxes/{id}/executions/{eid}/stream_stderr_updates", s.withExecution(s.streamUpdates(stderr)))
	m.HandleFunc("POST /v1/devboxes/{id}/write_file_contents", s.withDevbox(true, s.writeFileContents))
	m.HandleFunc("POST /v1/devboxes/{id}/read_file_contents", s.withDevbox(true, s.readFileContents))
	m.HandleFunc("POST /v1/devboxes/{id}/upload_file", s.withDevbox(true, s.uploadFile))
	m.HandleFunc("POST /v1/devboxes/{id}/download_file", s.withDevbox(true, s.downloadFile))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no route for %s %s in the fake", r.Method, r.URL.Path)
	})
	return m
}

// apiError writes Runloop's error body; the SDK shows its "message".
func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	// Permanent failures say so, or the SDK would retry a 409 five times.
	if status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout {
		w.Header().Set("X-Should-Retry", "false")
	}
	writeJSON(w, status, map[string]any{"message": fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// readJSON decodes a JSON body; an empty body (the SDK sends one labelled
// as JSON on shutdown, keep_alive...) is an empty object.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	if err := dec.Decode(v); err != nil && err.Error() != "EOF" {
		apiError(w, http.StatusBadRequest, "invalid JSON body: %v", err)
		return false
	}
	return true
}

func newID(prefix string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 21)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

func nowMs() int64 { return time.Now().UnixMilli() }

// Devbox statuses.
const (
	statusProvisioning = "provisioning"
	statusRunning      = "running"
	statusFailure      = "failure"
	statusShutdown     = "shutdown"
)

type transition struct {
	Status           string `json:"status"`
	TransitionTimeMs int64  `json:"transition_time_ms"`
}

// devbox is one fake devbox: a fakebox sandbox and Runloop's view of it.
type devbox struct {
	ID      string
	Home    string
	Created int64
	box     *fakebox.Box
	remove  func() // kills everything in the sandbox and deletes it

	mu          sync.Mutex
	name        string
	status      string
	metadata    map[string]string
	launch      map[string]any
	blueprintID string
	blueprint   string
	snapshotID  string
	endMs       *int64
	reason      string
	transitions []transition
	changed     chan struct{} // closed and replaced at every status change
	holder      int           // PID holding the devbox's mount namespace, or 0
	execs       map[string]*execution
	execOrder   []string
	keepAlives  int
	lastKeep    time.Time
}

func (d *devbox) setStatus(status string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setStatusLocked(status)
}

func (d *devbox) setStatusLocked(status string) {
	if d.status == status {
		return
	}
	d.status = status
	d.transitions = append(d.transitions, transition{status, nowMs()})
	close(d.changed)
	d.changed = make(chan struct{})
}

// shutdown ends the devbox: its commands are killed, its files removed.
func (d *devbox) shutdown(reason string) bool {
	d.mu.Lock()
	if d.status == statusShutdown {
		d.mu.Unlock()
		return false
	}
	end := nowMs()
	d.endMs, d.reason = &end, reason
	d.setStatusLocked(statusShutdown)
	execs := make([]*execution, 0, len(d.execs))
	for _, e := range d.execs {
		execs = append(execs, e)
	}
	d.mu.Unlock()
	for _, e := range execs {
		e.kill(true)
	}
	d.remove()
	os.RemoveAll(d.Home + ".tmp")
	return true
}

// view is Runloop's DevboxView.
func (d *devbox) view() map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := map[string]any{
		"id":                d.ID,
		"name":              d.name,
		"status":            d.status,
		"capabilities":      []string{},
		"create_time_ms":    d.Created,
		"end_time_ms":       d.endMs,
		"launch_parameters": d.launch,
		"metadata":          d.metadata,
		"state_transitions": slices.Clone(d.transitions),
		"initiator_type":    "api",
		"tunnel":            nil,
	}
	if d.blueprintID != "" {
		v["blueprint_id"] = d.blueprintID
	}
	if d.snapshotID != "" {
		v["snapshot_id"] = d.snapshotID
	}
	if d.reason != "" {
		v["shutdown_reason"] = d.reason
	}
	return v
}

// DevboxInfo describes a live devbox, for tests.
type DevboxInfo struct {
	ID         string            `json:"id"`
	Status     string            `json:"status"`
	Home       string            `json:"home"`
	Metadata   map[string]string `json:"metadata"`
	KeepAlives int               `json:"keep_alives"`
	Launch     map[string]any    `json:"launch_parameters"`
	Blueprint  string            `json:"blueprint,omitempty"`
}

// Devboxes lists the devboxes not shut down, oldest first.
func (s *Server) Devboxes() []DevboxInfo {
	s.mu.Lock()
	ids := slices.Clone(s.order)
	s.mu.Unlock()
	var out []DevboxInfo
	for _, id := range ids {
		d := s.devbox(id)
		d.mu.Lock()
		if d.status != statusShutdown && d.status != statusFailure {
			bp := d.blueprint
			if bp == "" {
				bp = d.blueprintID + d.snapshotID
			}
			out = append(out, DevboxInfo{ID: d.ID, Status: d.status, Home: d.Home, Metadata: d.metadata,
				KeepAlives: d.keepAlives, Launch: d.launch, Blueprint: bp})
		}
		d.mu.Unlock()
	}
	return out
}

// Creates counts the create requests the fake has received.
func (s *Server) Creates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creates
}

func (s *Server) devbox(id string) *devbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.devboxes[id]
}

// withDevbox finds the devbox named in the path; running requires it to be
// running, as commands and files do.
func (s *Server) withDevbox(running bool, h func(http.ResponseWriter, *http.Request, *devbox)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d := s.devbox(r.PathValue("id"))
		if d == nil {
			apiError(w, http.StatusNotFound, "Devbox %s not found", r.PathValue("id"))
			return
		}
		if running {
			d.mu.Lock()
			st := d.status
			d.mu.Unlock()
			if st != statusRunning {
				apiError(w, http.StatusBadRequest, "Devbox %s is %s, not running", d.ID, st)
				return
			}
		}
		h(w, r, d)
	}
}
