package daytonafake

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

// The daemon's stream markers in a session command's log.
var (
	stdoutPrefix = []byte{1, 1, 1}
	stderrPrefix = []byte{2, 2, 2}
)

type ctxKey struct{}

func withSandbox(ctx context.Context, sb *sandbox) context.Context {
	return context.WithValue(ctx, ctxKey{}, sb)
}

func sandboxFrom(ctx context.Context) *sandbox { return ctx.Value(ctxKey{}).(*sandbox) }

// splitCommand splits a command line the way the daemon's execute route
// does: at spaces outside quotes, where a quote of either kind runs to the
// next quote of the same kind. No shell is involved.
func splitCommand(s string) []string {
	var args []string
	var cur strings.Builder
	var quote rune
	started := false
	for _, r := range s {
		switch {
		case quote == 0 && (r == '"' || r == '\''):
			quote, started = r, true
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && r == ' ':
			if started {
				args = append(args, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteRune(r)
			started = true
		}
	}
	if started {
		args = append(args, cur.String())
	}
	return args
}

// execute serves POST /process/execute: run argv (no shell) to the end,
// with combined output, killing its process group at the timeout (default
// 360 s) and answering 408 then.
func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	var req struct {
		Command string            `json:"command"`
		Cwd     string            `json:"cwd"`
		Envs    map[string]string `json:"envs"`
		Timeout *int              `json:"timeout"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.Command == "" {
		toolboxError(w, r, http.StatusBadRequest, "INVALID_REQUEST_BODY", "command is required")
		return
	}
	argv := splitCommand(req.Command)
	if len(argv) == 0 {
		toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "empty command")
		return
	}
	timeout := 360 * time.Second
	if req.Timeout != nil && *req.Timeout > 0 {
		timeout = time.Duration(*req.Timeout) * time.Second
	}
	var out lockedBuffer
	p, err := sb.Start(fakebox.Spec{Argv: argv, Cwd: req.Cwd, Env: req.Envs, Stdout: &out, Stderr: &out})
	if err != nil {
		writeJSON(w, http.StatusOK, map[string]any{"exitCode": -1, "result": err.Error()})
		return
	}
	select {
	case <-p.Done():
	case <-time.After(timeout):
		p.Signal(syscall.SIGKILL)
		p.Wait()
		toolboxError(w, r, http.StatusRequestTimeout, "REQUEST_TIMEOUT", "command execution timeout")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"exitCode": exitCode(p.Wait()), "result": out.String()})
}

// exitCode is the status a shell reports: 128+N after signal N.
func exitCode(e fakebox.Exit) int {
	if e.Signal != 0 {
		return 128 + int(e.Signal)
	}
	return e.Code
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// session is a daemon session: commands run one after another.
type session struct {
	id    string
	queue chan *command
	done  chan struct{}

	mu       sync.Mutex
	commands map[string]*command
	order    []string
	killed   bool
}

// command is one command of a session. Its log holds the daemon's
// labelled output: each line of stdout or stderr behind its marker.
type command struct {
	id, text   string
	logPath    string
	suppress   bool
	stdinOpen  bool
	started    chan struct{}
	finished   chan struct{}
	mu         sync.Mutex
	stdin      io.WriteCloser
	proc       *fakebox.Proc
	exitCode   *int
	logWritten int64
}

func (c *command) exit() *int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitCode
}

func (se *session) kill() {
	se.mu.Lock()
	if se.killed {
		se.mu.Unlock()
		return
	}
	se.killed = true
	cmds := make([]*command, 0, len(se.commands))
	for _, c := range se.commands {
		cmds = append(cmds, c)
	}
	se.mu.Unlock()
	close(se.done)
	for _, c := range cmds {
		c.mu.Lock()
		if c.proc != nil && c.exitCode == nil {
			c.proc.Signal(syscall.SIGKILL)
		}
		c.mu.Unlock()
		os.Remove(c.logPath) // a follower still reading keeps its open file
	}
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) (*sandbox, *session, bool) {
	sb := sandboxFrom(r.Context())
	sb.mu.Lock()
	se := sb.sessions[r.PathValue("sid")]
	sb.mu.Unlock()
	if se == nil {
		toolboxError(w, r, http.StatusNotFound, "NOT_FOUND", "session not found")
		return nil, nil, false
	}
	return sb, se, true
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	var req struct {
		SessionID string `json:"sessionId"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.SessionID == "" {
		toolboxError(w, r, http.StatusBadRequest, "INVALID_REQUEST_BODY", "sessionId is required")
		return
	}
	sb.mu.Lock()
	if _, dup := sb.sessions[req.SessionID]; dup {
		sb.mu.Unlock()
		toolboxError(w, r, http.StatusConflict, "CONFLICT", "session already exists")
		return
	}
	se := &session{id: req.SessionID, queue: make(chan *command, 64), done: make(chan struct{}), commands: map[string]*command{}}
	sb.sessions[se.id] = se
	sb.mu.Unlock()
	go s.runSession(sb, se)
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	sb.mu.Lock()
	out := []map[string]any{}
	for _, se := range sb.sessions {
		out = append(out, se.json())
	}
	sb.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (se *session) json() map[string]any {
	se.mu.Lock()
	defer se.mu.Unlock()
	cmds := []map[string]any{}
	for _, id := range se.order {
		cmds = append(cmds, se.commands[id].json())
	}
	return map[string]any{"sessionId": se.id, "commands": cmds}
}

func (c *command) json() map[string]any {
	m := map[string]any{"id": c.id, "command": c.text}
	if ec := c.exit(); ec != nil {
		m["exitCode"] = *ec
	}
	return m
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	if _, se, ok := s.session(w, r); ok {
		writeJSON(w, http.StatusOK, se.json())
	}
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) {
	sb, se, ok := s.session(w, r)
	if !ok {
		return
	}
	sb.mu.Lock()
	delete(sb.sessions, se.id)
	sb.mu.Unlock()
	se.kill()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) sessionExec(w http.ResponseWriter, r *http.Request) {
	sb, se, ok := s.session(w, r)
	if !ok {
		return
	}
	var req struct {
		Command           string `json:"command"`
		RunAsync          bool   `json:"runAsync"`
		Async             bool   `json:"async"`
		SuppressInputEcho bool   `json:"suppressInputEcho"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		toolboxError(w, r, http.StatusBadRequest, "INVALID_REQUEST_BODY", "invalid request body: %v", err)
		return
	}
	if strings.TrimSpace(req.Command) == "" {
		toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "command cannot be empty")
		return
	}
	logf, err := os.CreateTemp(s.logDir, "session-log-*")
	if err != nil {
		toolboxError(w, r, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "%v", err)
		return
	}
	logf.Close()
	c := &command{id: randomHex(16), text: req.Command, logPath: logf.Name(), suppress: req.SuppressInputEcho,
		started: make(chan struct{}), finished: make(chan struct{})}
	se.mu.Lock()
	if se.killed {
		se.mu.Unlock()
		toolboxError(w, r, http.StatusGone, "SESSION_ENDED", "session has ended")
		return
	}
	se.commands[c.id] = c
	se.order = append(se.order, c.id)
	se.mu.Unlock()
	c.stdinOpen = req.RunAsync || req.Async
	se.queue <- c
	if req.RunAsync || req.Async {
		writeJSON(w, http.StatusAccepted, map[string]any{"cmdId": c.id})
		return
	}
	select {
	case <-c.finished:
	case <-r.Context().Done():
		return
	}
	raw, _ := os.ReadFile(c.logPath)
	stdout, stderr, combined := demux(raw)
	_ = sb
	writeJSON(w, http.StatusOK, map[string]any{"cmdId": c.id, "output": combined, "stdout": stdout, "stderr": stderr, "exitCode": *c.exit()})
}

// demux splits a labelled log into its streams and their interleaving.
func demux(raw []byte) (stdout, stderr, combined string) {
	var o, e, all bytes.Buffer
	cur := &o
	for len(raw) > 0 {
		i := bytes.IndexAny(raw, "\x01\x02")
		if i < 0 || i+3 > len(raw) {
			cur.Write(raw)
			all.Write(raw)
			break
		}
		cur.Write(raw[:i])
		all.Write(raw[:i])
		switch {
		case bytes.HasPrefix(raw[i:], stdoutPrefix):
			cur, raw = &o, raw[i+3:]
		case bytes.HasPrefix(raw[i:], stderrPrefix):
			cur, raw = &e, raw[i+3:]
		default:
			cur.Write(raw[i : i+1])
			all.Write(raw[i : i+1])
			raw = raw[i+1:]
		}
	}
	return o.String(), e.String(), all.String()
}

// runSession runs the session's commands in order until it is deleted.
func (s *Server) runSession(sb *sandbox, se *session) {
	for {
		select {
		case <-se.done:
			return
		case c := <-se.queue:
			s.runCommand(sb, se, c)
		}
	}
}

// runCommand runs one session command with /bin/sh -c in the sandbox's
// directory, labelling its output line by line into the log as the
// daemon's wrapper does, and records the exit code once the output is in.
func (s *Server) runCommand(sb *sandbox, se *session, c *command) {
	defer close(c.finished)
	fail := func(code int) {
		c.mu.Lock()
		c.exitCode = &code
		c.mu.Unlock()
		close(c.started)
	}
	select {
	case <-se.done:
		fail(1)
		return
	default:
	}
	logf, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fail(1)
		return
	}
	defer logf.Close()
	var logMu sync.Mutex
	stdout := &labeler{prefix: stdoutPrefix, log: logf, mu: &logMu}
	stderr := &labeler{prefix: stderrPrefix, log: logf, mu: &logMu}
	p, err := sb.Start(fakebox.Spec{Argv: []string{"/bin/sh", "-c", c.text}, Stdin: c.stdinOpen, Stdout: stdout, Stderr: stderr})
	if err != nil {
		fail(127)
		return
	}
	c.mu.Lock()
	c.proc, c.stdin = p, p.Stdin
	c.mu.Unlock()
	close(c.started)
	code := exitCode(p.Wait())
	stdout.flush()
	stderr.flush()
	c.mu.Lock()
	c.exitCode, c.stdin = &code, nil
	c.mu.Unlock()
	if p.Stdin != nil {
		p.Stdin.Close()
	}
}

// labeler writes a stream into the log line by line, each line behind
// prefix and ending in a newline (flush adds one to a last line without
// one), without NUL bytes: what the daemon's `read -r` loops produce. A
// line longer than 64 KiB goes in pieces, each behind the prefix.
type labeler struct {
	prefix []byte
	log    *os.File
	mu     *sync.Mutex
	buf    []byte
}

func (l *labeler) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			l.buf = append(l.buf, bytes.ReplaceAll(b, []byte{0}, nil)...)
			if len(l.buf) >= 64<<10 {
				l.emit(l.buf)
				l.buf = l.buf[:0]
			}
			break
		}
		l.buf = append(l.buf, bytes.ReplaceAll(b[:i+1], []byte{0}, nil)...)
		l.emit(l.buf)
		l.buf = l.buf[:0]
		b = b[i+1:]
	}
	return n, nil
}

func (l *labeler) emit(line []byte) {
	out := make([]byte, 0, len(l.prefix)+len(line))
	out = append(append(out, l.prefix...), line...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log.Write(out)
}

func (l *labeler) flush() {
	if len(l.buf) > 0 {
		l.emit(append(l.buf, '\n'))
		l.buf = nil
	}
}

func (s *Server) command(w http.ResponseWriter, r *http.Request) (*command, bool) {
	_, se, ok := s.session(w, r)
	if !ok {
		return nil, false
	}
	se.mu.Lock()
	c := se.commands[r.PathValue("cid")]
	se.mu.Unlock()
	if c == nil {
		toolboxError(w, r, http.StatusNotFound, "NOT_FOUND", "command not found")
		return nil, false
	}
	return c, true
}

func (s *Server) getCommand(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.command(w, r); ok {
		writeJSON(w, http.StatusOK, c.json())
	}
}

func (s *Server) commandInput(w http.ResponseWriter, r *http.Request) {
	c, ok := s.command(w, r)
	if !ok {
		return
	}
	var req struct {
		Data string `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&req); err != nil {
		toolboxError(w, r, http.StatusBadRequest, "INVALID_REQUEST_BODY", "invalid request body: %v", err)
		return
	}
	<-c.started
	c.mu.Lock()
	stdin, ec := c.stdin, c.exitCode
	c.mu.Unlock()
	if ec != nil || stdin == nil {
		toolboxError(w, r, http.StatusGone, "COMMAND_ALREADY_COMPLETED", "command has already completed")
		return
	}
	data := req.Data
	if !strings.HasSuffix(data, "\n") {
		data += "\n" // as the daemon does, for commands like `read`
	}
	if _, err := io.WriteString(stdin, data); err != nil {
		toolboxError(w, r, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "failed to write to input pipe: %v", err)
		return
	}
	if !c.suppress {
		if f, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			f.Write(append(append([]byte{}, stdoutPrefix...), data...))
			f.Close()
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// commandLogs serves the command's log: over a websocket (binary frames of
// the labelled log, following it until the command has exited when
// follow=true), or as a plain answer: JSON {output, stdout, stderr} for
// clients that send X-Daytona-SDK-Version (0.167.0 or later), the combined
// text for others.
func (s *Server) commandLogs(w http.ResponseWriter, r *http.Request) {
	c, ok := s.command(w, r)
	if !ok {
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		raw, err := os.ReadFile(c.logPath)
		if err != nil {
			fsError(w, r, "log", err)
			return
		}
		stdout, stderr, combined := demux(raw)
		if r.Header.Get("X-Daytona-SDK-Version") != "" {
			writeJSON(w, http.StatusOK, map[string]string{"output": combined, "stdout": stdout, "stderr": stderr})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, combined)
		return
	}
	follow := r.URL.Query().Get("follow") == "true"
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	go func() { // read (and drop) what the client sends, to see it leave
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	f, err := os.Open(c.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	cut := s.faults.TakeCut(cutLog)
	sent := 0
	buf := make([]byte, 32<<10)
	for {
		n, _ := f.Read(buf)
		if n > 0 {
			if cut >= 0 && sent+n > cut {
				conn.WriteMessage(websocket.BinaryMessage, buf[:cut-sent])
				conn.UnderlyingConn().Close() // no close frame: the stream just breaks
				return
			}
			if err := conn.WriteMessage(websocket.BinaryMessage, buf[:n]); err != nil {
				return
			}
			sent += n
			continue
		}
		if !follow || c.exit() != nil {
			// The exit code is recorded after the last byte of output.
			if n, _ := f.Read(buf); n > 0 {
				conn.WriteMessage(websocket.BinaryMessage, buf[:n])
				continue
			}
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-c.finished:
		case <-time.After(10 * time.Millisecond):
		}
	}
}
