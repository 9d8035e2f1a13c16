package tools

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

const (
	// progressInterval rate-limits notifications, so a chatty command
	// cannot flood the session (mcp-go drops notifications past a buffer of
	// 100 on HTTP).
	progressInterval = 200 * time.Millisecond
	// maxProgressMessage caps the new output one notification carries; the
	// rest is summarised as a count (the result and process_output have it).
	maxProgressMessage = 8 << 10
)

// progress sends notifications/progress for one call. Progress is the
// number of output bytes streamed so far (stdout plus stderr), which only
// grows; message is the new output. A nil *progress sends nothing, so
// callers need not check whether the client asked for progress.
type progress struct {
	ctx   context.Context
	srv   *server.MCPServer
	token any
	sent  int64 // bytes accounted for, including those skipped
	last  time.Time
}

func newProgress(ctx context.Context) *progress {
	token := progressToken(ctx)
	srv := server.ServerFromContext(ctx)
	if token == nil || srv == nil {
		return nil
	}
	return &progress{ctx: ctx, srv: srv, token: token}
}

// due reports whether a notification may be sent now.
func (p *progress) due() bool {
	return p != nil && time.Since(p.last) >= progressInterval
}

// send reports n more bytes, of which message shows the last ones.
func (p *progress) send(n int64, message string) {
	if p == nil || n <= 0 {
		return
	}
	p.sent += n
	p.last = time.Now()
	// A failed send (client gone, buffer full) must not fail the command.
	_ = p.srv.SendNotificationToClient(p.ctx, "notifications/progress", map[string]any{
		"progressToken": p.token,
		"progress":      p.sent,
		"message":       message,
	})
}

func skippedNote(n int64) string {
	return "[... " + strconv.FormatInt(n, 10) + " bytes not shown ...]\n"
}

// processStreamer streams a process's new output from its logs.
type processStreamer struct {
	*progress
	pp       providers.Processes
	id, proc string
	sent     [2]int64 // per stream
}

// flush sends what the streams gained since the last notification, when
// one is due. Bytes of a rune cut at the end wait for the next flush.
func (s *processStreamer) flush(in providers.ProcessInfo) {
	if !s.due() {
		return
	}
	totals := [2]int64{in.StdoutBytes, in.StderrBytes}
	var msg []byte
	var n int64
	for i, stream := range []providers.Stream{providers.Stdout, providers.Stderr} {
		if totals[i] <= s.sent[i] {
			continue
		}
		from := max(s.sent[i], totals[i]-maxProgressMessage)
		if from > s.sent[i] {
			msg = append(msg, skippedNote(from-s.sent[i])...)
		}
		out, err := s.pp.ReadOutput(s.ctx, s.id, s.proc, providers.OutputRequest{Stream: stream, Offset: from, Limit: int(totals[i] - from)})
		if err != nil {
			return
		}
		data := out.Data
		if in.Running {
			data = trimIncompleteEnd(data)
		}
		end := out.Offset + int64(len(data))
		n += end - s.sent[i]
		s.sent[i] = end
		msg = append(msg, data...)
	}
	text, _ := toValidLossy(msg)
	s.send(n, text)
}

// streamWriter streams output written to it (the Exec path): writes keep
// the newest maxProgressMessage bytes pending, and a ticker sends them.
type streamWriter struct {
	p       *progress
	mu      sync.Mutex
	pending []byte
	skipped int64
	stop    chan struct{}
	done    chan struct{}
}

func newStreamWriter(p *progress) *streamWriter {
	w := &streamWriter{p: p, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *streamWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, b...)
	if over := len(w.pending) - maxProgressMessage; over > 0 {
		w.skipped += int64(over)
		w.pending = append(w.pending[:0], w.pending[over:]...)
	}
	return len(b), nil
}

func (w *streamWriter) loop() {
	defer close(w.done)
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		data := trimIncompleteEnd(w.pending)
		n := w.skipped + int64(len(data))
		msg := string(data)
		if w.skipped > 0 {
			msg = skippedNote(w.skipped) + msg
		}
		w.pending = append(w.pending[:0], w.pending[len(data):]...)
		w.skipped = 0
		w.mu.Unlock()
		if n > 0 {
			text, _ := toValidLossy([]byte(msg))
			w.p.send(n, text)
		}
	}
}

// Close stops the ticker; output still pending is in the result.
func (w *streamWriter) Close() {
	close(w.stop)
	<-w.done
}
