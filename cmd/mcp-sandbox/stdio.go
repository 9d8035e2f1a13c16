package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

// shutdownGrace is how long tool calls still running when the server is
// told to stop (SIGTERM, stdin EOF) get to wind down. A call blocked in a
// driver past it is abandoned: the sessions end (killing what their
// sandboxes run) and the server exits anyway.
const shutdownGrace = 10 * time.Second

// stdioWorkers is how many tool calls mcp-go's stdio server runs at once
// (its maximum). It is above tools.Limits.MaxCallsPerSession, so calls over
// that bound are refused at once by a free worker and a cheap call never
// queues behind long ones.
const stdioWorkers = 100

func (a *app) serveStdio(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	s := server.NewStdioServer(a.mcp)
	s.SetErrorLogger(log.New(&slogWriter{a.log}, "", 0))
	server.WithWorkerPoolSize(stdioWorkers)(s)
	growPipe(stdin)
	growPipe(stdout)
	out := &lockedWriter{w: stdout}
	in := newLineLimiter(stdin, a.cfg.MaxBodyBytes, func(id any, size int64) {
		a.log.Warn("stdio message over the size limit dropped", "bytes", size, "limit", a.cfg.MaxBodyBytes)
		writeRPCError(out, id, mcp.INVALID_REQUEST, fmt.Sprintf(
			"message of %d bytes is over this server's limit of %d bytes per message (--max-body-bytes, MCP_SANDBOX_MAX_BODY_BYTES): send less per call, for example write a large file in several parts",
			size, a.cfg.MaxBodyBytes))
	})
	a.log.Info("serving MCP over stdio", "provider", a.cfg.Provider, "version", version)

	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, in, out) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	case <-in.ended:
	}
	// Listen has cancelled the running calls and waits for them to return.
	select {
	case err := <-done:
		return err
	case <-time.After(shutdownGrace):
	}
	a.log.Error("tool calls did not end within the shutdown grace period; abandoning them and ending the sessions",
		"grace", shutdownGrace, "calls", a.calls.list())
	return nil
}

// lockedWriter makes each Write whole: mcp-go writes a message per Write
// under its own lock, and the line limiter's errors come from elsewhere.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func writeRPCError(w io.Writer, id any, code int, message string) {
	b, _ := json.Marshal(mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(id),
		Error: mcp.NewJSONRPCErrorDetails(code, message, nil)})
	w.Write(append(b, '\n'))
}

// lineLimiter hands stdio input on one whole line at a time and drops a
// line longer than max as it streams, so a 100 MB line costs max bytes of
// memory instead of growing a buffer without bound; tooLong is told the
// request's id (when the line's start carries it) and the line's size.
// ended is closed when the input ends.
type lineLimiter struct {
	r       *bufio.Reader
	max     int64
	tooLong func(id any, size int64)
	line    []byte // the next line to hand on, possibly partly read
	err     error
	ended   chan struct{}
}

func newLineLimiter(r io.Reader, max int64, tooLong func(id any, size int64)) *lineLimiter {
	return &lineLimiter{r: bufio.NewReaderSize(r, 64<<10), max: max, tooLong: tooLong, ended: make(chan struct{})}
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	for len(l.line) == 0 {
		if l.err != nil {
			return 0, l.err
		}
		l.line, l.err = l.next()
		if l.err != nil {
			close(l.ended)
		}
	}
	n := copy(p, l.line)
	l.line = l.line[n:]
	return n, nil
}

// next reads one line of at most max bytes, skipping longer ones.
func (l *lineLimiter) next() ([]byte, error) {
	var line []byte
	for {
		chunk, err := l.r.ReadSlice('\n')
		if need := len(line) + len(chunk); int64(need) <= l.max {
			if need > cap(line) {
				// Double, not append's 1.25x for large slices: a line near
				// the limit then costs at most twice it in allocations.
				grown := make([]byte, len(line), min(max(2*cap(line), need), int(l.max)))
				line = append(grown[:copy(grown, line)], chunk...)
			} else {
				line = append(line, chunk...)
			}
		} else {
			head := line
			if len(head) == 0 {
				head = chunk // valid until the next read
			}
			id := requestID(head[:min(len(head), 4096)])
			size := int64(len(line) + len(chunk))
			for errors.Is(err, bufio.ErrBufferFull) {
				chunk, err = l.r.ReadSlice('\n')
				size += int64(len(chunk))
			}
			l.tooLong(id, size)
			line = nil
			if err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case len(line) > 0:
			return line, nil // the last line without a newline; the error comes next
		default:
			return nil, err
		}
	}
}

// requestID finds the "id" member in the start of a JSON-RPC message,
// skipping the values of other members; nil when it is not there.
func requestID(head []byte) any {
	dec := json.NewDecoder(bytes.NewReader(head))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for {
		key, err := dec.Token()
		if err != nil {
			return nil
		}
		if key == "id" {
			v, err := dec.Token()
			if err != nil {
				return nil
			}
			if n, ok := v.(json.Number); ok {
				if i, err := n.Int64(); err == nil {
					return i
				}
			}
			if s, ok := v.(string); ok {
				return s
			}
			return nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
}

// callTracker knows the tool calls in flight, to name the ones a shutdown
// abandons.
type callTracker struct {
	mu    sync.Mutex
	calls map[string]string // session/id -> tool and start time
}

func (c *callTracker) addHooks(h *server.Hooks) {
	c.calls = map[string]string{}
	key := func(ctx context.Context, id any) string {
		sid := ""
		if cs := server.ClientSessionFromContext(ctx); cs != nil {
			sid = cs.SessionID()
		}
		return fmt.Sprintf("%s/%v", sid, id)
	}
	h.AddBeforeCallTool(func(ctx context.Context, id any, req *mcp.CallToolRequest) {
		c.mu.Lock()
		c.calls[key(ctx, id)] = req.Params.Name + " since " + time.Now().Format(time.TimeOnly)
		c.mu.Unlock()
	})
	done := func(ctx context.Context, id any) {
		c.mu.Lock()
		delete(c.calls, key(ctx, id))
		c.mu.Unlock()
	}
	h.AddAfterCallTool(func(ctx context.Context, id any, _ *mcp.CallToolRequest, _ any) { done(ctx, id) })
	h.AddOnError(func(ctx context.Context, id any, method mcp.MCPMethod, _ any, _ error) {
		if method == mcp.MethodToolsCall {
			done(ctx, id)
		}
	})
}

// list names the calls in flight, as "session/id: tool since hh:mm:ss".
func (c *callTracker) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, v := range c.calls {
		out = append(out, k+": "+v)
	}
	return out
}
