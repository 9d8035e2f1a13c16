package runloopfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

type stream int

const (
	stdout stream = iota
	stderr
)

// Execution statuses.
const (
	execRunning   = "running"
	execCompleted = "completed"
)

// execution is one command run in a devbox.
type execution struct {
	ID     string
	devbox string
	shell  *string
	proc   *fakebox.Proc

	mu       sync.Mutex
	out      [2][]byte
	status   string
	exit     int
	stdin    io.WriteCloser // nil unless attach_stdin, and after EOF
	changed  chan struct{}
	finished bool
}

func (e *execution) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// output collects one stream as it comes.
type output struct {
	e *execution
	s stream
}

func (o output) Write(b []byte) (int, error) {
	o.e.mu.Lock()
	defer o.e.mu.Unlock()
	o.e.out[o.s] = append(o.e.out[o.s], b...)
	o.e.notifyLocked()
	return len(b), nil
}

// kill ends the command, or its whole process group (which may outlive
// the command: `server &`).
func (e *execution) kill(group bool) {
	e.mu.Lock()
	done := e.finished
	e.mu.Unlock()
	switch {
	case e.proc == nil:
	case group:
		e.proc.Signal(syscall.SIGKILL)
	case !done:
		syscall.Kill(e.proc.PID, syscall.SIGKILL)
	}
}

// start runs command with /bin/sh in the devbox's home, through fakebox
// (which ends the command's streams 200ms after it exits even when a
// background child holds them).
func (s *Server) start(d *devbox, command string, shell *string, attachStdin bool) (*execution, error) {
	e := &execution{ID: newID("exe_"), devbox: d.ID, shell: shell, status: execRunning, changed: make(chan struct{})}
	argv := []string{"/bin/sh", "-c", command}
	switch {
	case d.holder != 0:
		argv = joined(d.holder, d.Home, command)
	case s.isolate:
		argv = isolated(d.Home+".tmp", command)
	}
	p, err := d.box.Start(fakebox.Spec{Argv: argv, Stdin: attachStdin, Stdout: output{e, stdout}, Stderr: output{e, stderr}})
	if err != nil {
		return nil, err
	}
	e.proc, e.stdin = p, p.Stdin
	d.mu.Lock()
	d.execs[e.ID] = e
	d.execOrder = append(d.execOrder, e.ID)
	d.mu.Unlock()
	go func() {
		ex := p.Wait()
		e.mu.Lock()
		e.exit = ex.Code
		if ex.Signal != 0 {
			e.exit = 128 + int(ex.Signal)
		}
		e.status, e.finished = execCompleted, true
		if e.stdin != nil {
			e.stdin.Close()
			e.stdin = nil
		}
		e.notifyLocked()
		e.mu.Unlock()
	}()
	return e, nil
}

// view is Runloop's DevboxAsyncExecutionDetailView. Output is set once the
// command completed: the last lastN lines of each stream (all when lastN
// is negative), with *_truncated saying whether lines were left out.
func (e *execution) view(lastN int) map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := map[string]any{"devbox_id": e.devbox, "execution_id": e.ID, "status": e.status, "shell_name": e.shell}
	if e.status == execCompleted {
		v["exit_status"] = e.exit
		for i, name := range []string{"stdout", "stderr"} {
			text, cut := lastLines(e.out[i], lastN)
			v[name] = text
			v[name+"_truncated"] = cut
		}
	}
	return v
}

// lastLines returns the last n lines of b as text (invalid UTF-8 becomes
// U+FFFD, as any JSON string must).
func lastLines(b []byte, n int) (string, bool) {
	if n < 0 {
		return strings.ToValidUTF8(string(b), "\uFFFD"), false
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	i := end
	for lines := 0; i > 0; i-- {
		if b[i-1] == '\n' {
			if lines++; lines == n {
				break
			}
		}
	}
	return strings.ToValidUTF8(string(b[i:]), "\uFFFD"), i > 0
}

func lastN(r *http.Request) int {
	if n, err := strconv.Atoi(r.URL.Query().Get("last_n")); err == nil && n >= 0 {
		return n
	}
	return 100
}

type execParams struct {
	Command           string  `json:"command"`
	CommandID         string  `json:"command_id"`
	ShellName         *string `json:"shell_name"`
	AttachStdin       bool    `json:"attach_stdin"`
	OptimisticTimeout *int    `json:"optimistic_timeout"`
}

func (s *Server) startFromRequest(w http.ResponseWriter, r *http.Request, d *devbox, stdin bool) (*execution, bool) {
	var p execParams
	if !readJSON(w, r, &p) {
		return nil, false
	}
	if strings.TrimSpace(p.Command) == "" {
		apiError(w, http.StatusBadRequest, "command must not be empty")
		return nil, false
	}
	e, err := s.start(d, p.Command, p.ShellName, stdin && p.AttachStdin)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "cannot start the command: %v", err)
		return nil, false
	}
	return e, true
}

// waitDone waits for the execution to complete, the request to end, or
// the timer to fire.
func (e *execution) waitDone(r *http.Request, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		e.mu.Lock()
		done, changed := e.finished, e.changed
		e.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-t.C:
			return false
		case <-r.Context().Done():
			return false
		}
	}
}

func (s *Server) executeSync(w http.ResponseWriter, r *http.Request, d *devbox) {
	e, ok := s.startFromRequest(w, r, d, false)
	if !ok {
		return
	}
	if !e.waitDone(r, time.Hour) {
		e.kill(true)
		return
	}
	v := e.view(-1)
	delete(v, "execution_id")
	delete(v, "status")
	writeJSON(w, http.StatusOK, v)
}

// execute waits up to optimistic_timeout seconds (default 25) before
// answering with the command still running.
func (s *Server) execute(w http.ResponseWriter, r *http.Request, d *devbox) {
	var p execParams
	body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if len(body) > 0 {
		if err := json.Unmarshal(body, &p); err != nil {
			apiError(w, http.StatusBadRequest, "invalid JSON body: %v", err)
			return
		}
	}
	if p.CommandID == "" {
		apiError(w, http.StatusBadRequest, "command_id is required (a UUIDv7 chosen by the client)")
		return
	}
	if e := d.execution(p.CommandID); e != nil { // a retry of the same command
		e.waitDone(r, optimistic(p))
		writeJSON(w, http.StatusOK, e.view(lastN(r)))
		return
	}
	e, err := s.start(d, p.Command, p.ShellName, false)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "cannot start the command: %v", err)
		return
	}
	d.mu.Lock() // addressable by the client's command ID as well
	d.execs[p.CommandID] = e
	d.mu.Unlock()
	e.waitDone(r, optimistic(p))
	writeJSON(w, http.StatusOK, e.view(lastN(r)))
}

func optimistic(p execParams) time.Duration {
	if p.OptimisticTimeout != nil && *p.OptimisticTimeout >= 0 {
		return time.Duration(min(*p.OptimisticTimeout, 60)) * time.Second
	}
	return 25 * time.Second
}

func (s *Server) executeAsync(w http.ResponseWriter, r *http.Request, d *devbox) {
	e, ok := s.startFromRequest(w, r, d, true)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, e.view(lastN(r)))
}

func (d *devbox) execution(id string) *execution {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.execs[id]
}

func (s *Server) withExecution(h func(http.ResponseWriter, *http.Request, *execution)) http.HandlerFunc {
	return s.withDevbox(false, func(w http.ResponseWriter, r *http.Request, d *devbox) {
		e := d.execution(r.PathValue("eid"))
		if e == nil {
			apiError(w, http.StatusNotFound, "Execution %s not found on devbox %s", r.PathValue("eid"), d.ID)
			return
		}
		h(w, r, e)
	})
}

func (s *Server) getExecution(w http.ResponseWriter, r *http.Request, e *execution) {
	writeJSON(w, http.StatusOK, e.view(lastN(r)))
}

func (s *Server) waitExecution(w http.ResponseWriter, r *http.Request, e *execution) {
	var p struct {
		Statuses       []string `json:"statuses"`
		TimeoutSeconds float64  `json:"timeout_seconds"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	hold := min(s.opts.LongPoll, 25*time.Second)
	if t := time.Duration(p.TimeoutSeconds * float64(time.Second)); t > 0 && t < hold {
		hold = t
	}
	e.mu.Lock()
	reached := slices.Contains(p.Statuses, e.status)
	e.mu.Unlock()
	if !reached && slices.Contains(p.Statuses, execCompleted) {
		reached = e.waitDone(r, hold)
	}
	if s.takeLongPollFault() || !reached {
		w.Header().Set("X-Should-Retry", "true")
		writeJSON(w, http.StatusRequestTimeout, map[string]any{"message": "the execution did not reach the requested status in time; ask again"})
		return
	}
	writeJSON(w, http.StatusOK, e.view(lastN(r)))
}

func (s *Server) killExecution(w http.ResponseWriter, r *http.Request, e *execution) {
	var p struct {
		KillProcessGroup bool `json:"kill_process_group"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	e.kill(p.KillProcessGroup)
	e.waitDone(r, 5*time.Second)
	writeJSON(w, http.StatusOK, e.view(lastN(r)))
}

func (s *Server) sendStdin(w http.ResponseWriter, r *http.Request, e *execution) {
	var p struct {
		Text   *string `json:"text"`
		Signal *string `json:"signal"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	e.mu.Lock()
	in := e.stdin
	e.mu.Unlock()
	if in == nil {
		apiError(w, http.StatusBadRequest, "execution %s has no stdin attached (start it with attach_stdin, and before EOF)", e.ID)
		return
	}
	if p.Text != nil {
		if _, err := io.WriteString(in, *p.Text); err != nil {
			apiError(w, http.StatusBadRequest, "the command no longer reads its stdin: %v", err)
			return
		}
	}
	if p.Signal != nil {
		switch *p.Signal {
		case "EOF":
			e.mu.Lock()
			if e.stdin != nil {
				e.stdin.Close()
				e.stdin = nil
			}
			e.mu.Unlock()
		case "INTERRUPT":
			e.proc.Signal(syscall.SIGINT)
		default:
			apiError(w, http.StatusBadRequest, "signal %q is not EOF or INTERRUPT", *p.Signal)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devbox_id": e.devbox, "execution_id": e.ID, "success": true})
}

// sseChunk is the most output one event carries.
const sseChunk = 32 << 10

// streamUpdates serves one stream as server-sent events from ?offset=N (a
// byte offset), each `data: {"output": ..., "offset": <start of the chunk>}`,
// and ends once the command completed and everything was sent. Chunks end
// on UTF-8 character boundaries while the command runs.
func (s *Server) streamUpdates(which stream) func(http.ResponseWriter, *http.Request, *execution) {
	return func(w http.ResponseWriter, r *http.Request, e *execution) {
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		if off < 0 {
			off = 0
		}
		cut := s.faults.TakeCut(cutStream)
		flusher, _ := w.(http.Flusher)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		if flusher != nil {
			flusher.Flush()
		}
		sent := 0
		for {
			e.mu.Lock()
			out, done, changed := e.out[which], e.finished, e.changed
			e.mu.Unlock()
			if off < len(out) {
				end := min(len(out), off+sseChunk)
				if !done || end < len(out) {
					end = runeBoundary(out, off, end)
				}
				if end > off {
					if cut >= 0 && sent+end-off > cut {
						end = off + max(cut-sent, 0)
						if end > off {
							writeEvent(w, out[off:end], off)
						}
						if flusher != nil {
							flusher.Flush()
						}
						panic(http.ErrAbortHandler) // cut mid-stream: the client must resume by offset
					}
					if err := writeEvent(w, out[off:end], off); err != nil {
						return
					}
					sent += end - off
					off = end
					if flusher != nil {
						flusher.Flush()
					}
					continue
				}
			}
			if done && off >= len(out) {
				return
			}
			select {
			case <-changed:
			case <-r.Context().Done():
				return
			}
		}
	}
}

// runeBoundary backs end off so that out[off:end] does not end inside a
// multi-byte character (it may stay put when no boundary is near).
func runeBoundary(out []byte, off, end int) int {
	for i := end; i > off && i > end-utf8.UTFMax; i-- {
		if utf8.RuneStart(out[i-1]) {
			if utf8.FullRune(out[i-1 : end]) {
				return end
			}
			return i - 1
		}
	}
	return end
}

func writeEvent(w io.Writer, b []byte, off int) error {
	data, _ := json.Marshal(map[string]any{"output": strings.ToValidUTF8(string(b), "\uFFFD"), "offset": off})
	_, err := fmt.Fprintf(w, "data: %s\n\n", data)
	return err
}
