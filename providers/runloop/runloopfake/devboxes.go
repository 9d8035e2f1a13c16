package runloopfake

import (
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

// The devbox routes: create (and await), get, update, list, long-poll,
// shutdown and keep-alive.

type createParams struct {
	Name          string            `json:"name"`
	BlueprintID   string            `json:"blueprint_id"`
	BlueprintName string            `json:"blueprint_name"`
	SnapshotID    string            `json:"snapshot_id"`
	Entrypoint    string            `json:"entrypoint"`
	Env           map[string]string `json:"environment_variables"`
	Metadata      map[string]string `json:"metadata"`
	Launch        map[string]any    `json:"launch_parameters"`
}

func (s *Server) create(awaitRunning bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var p createParams
		if !readJSON(w, r, &p) {
			return
		}
		failStatus, lost, stuck := s.faults.TakeCreate()
		s.mu.Lock()
		s.creates++
		// A retried create carrying the same idempotency key gets the
		// devbox the first attempt made, as Runloop's API does.
		key := r.Header.Get("X-Request-Id")
		if id, ok := s.byKey[key]; ok && key != "" && failStatus == 0 {
			d := s.devboxes[id]
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, d.view())
			return
		}
		s.mu.Unlock()
		if failStatus != 0 && !lost {
			apiError(w, failStatus, "injected create failure")
			return
		}
		d, err := s.newDevbox(p, key, stuck)
		if err != nil {
			apiError(w, http.StatusInternalServerError, "cannot make the devbox: %v", err)
			return
		}
		if failStatus != 0 {
			apiError(w, failStatus, "injected failure after the devbox was made")
			return
		}
		if awaitRunning {
			s.holdFor(r, d, []string{statusRunning, statusFailure, statusShutdown}, 0)
		}
		writeJSON(w, http.StatusOK, d.view())
	}
}

func (s *Server) newDevbox(p createParams, key string, stuck bool) (*devbox, error) {
	id := newID("dbx_")
	box, err := s.boxes.CreateID(id, p.Env)
	if err != nil {
		return nil, err
	}
	home := box.Home
	if err := os.Mkdir(home+".tmp", 0o1777); err != nil {
		s.boxes.Remove(id)
		return nil, err
	}
	if p.Metadata == nil {
		p.Metadata = map[string]string{}
	}
	if p.Launch == nil {
		p.Launch = map[string]any{}
	}
	d := &devbox{ID: id, Home: home, box: box, remove: func() { s.boxes.Remove(id) }, Created: nowMs(), name: p.Name, metadata: p.Metadata,
		launch: p.Launch, blueprintID: p.BlueprintID, blueprint: p.BlueprintName, snapshotID: p.SnapshotID,
		changed: make(chan struct{}), execs: map[string]*execution{}, lastKeep: time.Now()}
	d.setStatus(statusProvisioning)
	if argv := holder(home + ".tmp"); s.isolate && argv != nil {
		ready := make(chan struct{})
		h, err := box.Start(fakebox.Spec{Argv: argv, Stdout: readyWriter(ready)})
		if err == nil {
			select {
			case <-ready:
				d.holder = h.PID
			case <-h.Done():
			case <-time.After(10 * time.Second):
			}
		}
	}
	s.mu.Lock()
	s.devboxes[id] = d
	s.order = append(s.order, id)
	if key != "" {
		s.byKey[key] = id
	}
	s.mu.Unlock()
	if !stuck {
		time.AfterFunc(s.opts.ProvisionDelay, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.status == statusProvisioning {
				d.setStatusLocked(statusRunning)
			}
		})
	}
	go s.watchKeepAlive(d)
	return d, nil
}

// readyWriter closes ready at the first output.
type readyWriter chan struct{}

func (r readyWriter) Write(b []byte) (int, error) {
	select {
	case <-r:
	default:
		close(r)
	}
	return len(b), nil
}

// watchKeepAlive shuts the devbox down once it has gone
// launch_parameters.keep_alive_time_seconds without a keep_alive call.
func (s *Server) watchKeepAlive(d *devbox) {
	secs, _ := d.launch["keep_alive_time_seconds"].(float64)
	if secs <= 0 {
		return
	}
	limit := time.Duration(secs * float64(time.Second))
	for {
		d.mu.Lock()
		left := limit - time.Since(d.lastKeep)
		done := d.status == statusShutdown
		changed := d.changed
		d.mu.Unlock()
		if done {
			return
		}
		if left <= 0 {
			d.shutdown("keep_alive_timeout")
			return
		}
		select {
		case <-time.After(left):
		case <-changed:
		}
	}
}

// holdFor waits until the devbox's status is one of statuses, the request
// ends, or the long poll runs out; it reports whether the status was reached.
func (s *Server) holdFor(r *http.Request, d *devbox, statuses []string, timeout time.Duration) bool {
	hold := s.opts.LongPoll
	if timeout > 0 && timeout < hold {
		hold = timeout
	}
	deadline := time.NewTimer(hold)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		st, changed := d.status, d.changed
		d.mu.Unlock()
		if slices.Contains(statuses, st) {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		case <-r.Context().Done():
			return false
		}
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, d *devbox) {
	writeJSON(w, http.StatusOK, d.view())
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, d *devbox) {
	var p struct {
		Name     *string           `json:"name"`
		Metadata map[string]string `json:"metadata"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	d.mu.Lock()
	if p.Name != nil {
		d.name = *p.Name
	}
	if p.Metadata != nil {
		d.metadata = p.Metadata
	}
	d.mu.Unlock()
	writeJSON(w, http.StatusOK, d.view())
}

// list pages by cursor (starting_after) and filters by status, as
// GET /v1/devboxes does.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 20
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
		limit = min(l, 5000)
	}
	s.mu.Lock()
	ids := slices.Clone(s.order)
	s.mu.Unlock()
	slices.Reverse(ids) // newest first
	if after := q.Get("starting_after"); after != "" {
		if i := slices.Index(ids, after); i >= 0 {
			ids = ids[i+1:]
		}
	}
	views := []map[string]any{}
	more := false
	for _, id := range ids {
		v := s.devbox(id).view()
		if st := q.Get("status"); st != "" && v["status"] != st {
			continue
		}
		if len(views) == limit {
			more = true
			break
		}
		views = append(views, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"devboxes": views, "has_more": more, "total_count": len(views)})
}

func (s *Server) waitForStatus(w http.ResponseWriter, r *http.Request, d *devbox) {
	var p struct {
		Statuses       []string `json:"statuses"`
		TimeoutSeconds float64  `json:"timeout_seconds"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	if len(p.Statuses) == 0 {
		apiError(w, http.StatusBadRequest, "statuses must name at least one status")
		return
	}
	if s.takeLongPollFault() || !s.holdFor(r, d, p.Statuses, time.Duration(p.TimeoutSeconds*float64(time.Second))) {
		w.Header().Set("X-Should-Retry", "true")
		writeJSON(w, http.StatusRequestTimeout, map[string]any{"message": "the devbox did not reach the requested status in time; ask again"})
		return
	}
	writeJSON(w, http.StatusOK, d.view())
}

func (s *Server) shutdown(w http.ResponseWriter, r *http.Request, d *devbox) {
	if !d.shutdown("api_shutdown") {
		apiError(w, http.StatusBadRequest, "Devbox %s is already shut down", d.ID)
		return
	}
	writeJSON(w, http.StatusOK, d.view())
}

func (s *Server) keepAlive(w http.ResponseWriter, r *http.Request, d *devbox) {
	d.mu.Lock()
	d.keepAlives++
	d.lastKeep = time.Now()
	d.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{})
}
