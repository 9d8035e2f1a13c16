package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

// sessionLogs is a slog handler that writes every record to the server's own
// log (next) and also sends the records about one MCP session (those with a
// "session" attribute naming it) to that session's client, as MCP
// notifications/message at or above the level it asked for with
// logging/setLevel. So an agent sees, in its own client, why its sandbox
// went or its call was cancelled, and nothing of other sessions.
type sessionLogs struct {
	next  slog.Handler
	state *sessionLogState
	// session is the "session" attribute added with WithAttrs; attrs are
	// all attributes added so, to be sent with each record.
	session string
	attrs   []slog.Attr
	group   string
}

type sessionLogState struct {
	srv atomic.Pointer[server.MCPServer]
	// levels holds the level each session asked for (session ID ->
	// slog.Level): a session that never sent logging/setLevel gets no log
	// messages, as 2026-07-28 requires of a request that did not ask.
	levels sync.Map
	// requests holds, for sessions served here without being registered
	// here (their initialize was answered by another replica), the session
	// of a request in flight and the level the session asked for (session
	// ID -> *requestSink): mcp-go can send them nothing by ID.
	requests sync.Map
	// lowest is the lowest level any session asked for, so that records
	// below the server's own log level still reach the sessions that want
	// them.
	lowest atomic.Int64
}

func newSessionLogs(next slog.Handler) *sessionLogs {
	st := &sessionLogState{}
	st.lowest.Store(int64(noLevel)) // nobody asked yet
	return &sessionLogs{next: next, state: st}
}

// serve starts sending to the clients of srv, as they ask with
// logging/setLevel; hooks must be srv's. Records logged before are only
// written to the server's log.
func (h *sessionLogs) serve(srv *server.MCPServer, hooks *server.Hooks) {
	hooks.AddAfterSetLevel(func(ctx context.Context, _ any, req *mcp.SetLevelRequest, _ *mcp.EmptyResult) {
		if cs := server.ClientSessionFromContext(ctx); cs != nil {
			h.asked(cs.SessionID(), req.Params.Level)
		}
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, cs server.ClientSession) {
		h.state.levels.Delete(cs.SessionID())
	})
	h.state.srv.Store(srv)
}

// requestSink is where a session's log messages go while a request of it
// is served here: the session mcp-go made for the request.
type requestSink struct {
	cs    server.ClientSession
	level atomic.Int64 // slog.Level
}

// asked records the level a session set.
func (h *sessionLogs) asked(session string, level mcp.LoggingLevel) {
	l := slogLevel(level)
	if v, ok := h.state.requests.Load(session); ok {
		v.(*requestSink).level.Store(int64(l)) // not registered here: nothing to forget at its end
	} else {
		h.state.levels.Store(session, l)
	}
	h.lower(l)
}

// noLevel is the level of a session that never asked for log messages.
const noLevel = slog.LevelError + 1

// during sends the log messages of a session that is not registered here
// (another replica answered its initialize) to cs, the session mcp-go made
// for one of its requests, at level ("" for none), until ctx (the
// request's) ends.
func (h *sessionLogs) during(ctx context.Context, cs server.ClientSession, level mcp.LoggingLevel) {
	sink := &requestSink{cs: cs}
	l := noLevel
	if level != "" {
		l = slogLevel(level)
		h.lower(l)
	}
	sink.level.Store(int64(l))
	h.state.requests.Store(cs.SessionID(), sink)
	context.AfterFunc(ctx, func() { h.state.requests.CompareAndDelete(cs.SessionID(), sink) })
}

// lower makes sure records at l are handled.
func (h *sessionLogs) lower(l slog.Level) {
	for {
		lowest := h.state.lowest.Load()
		if int64(l) >= lowest || h.state.lowest.CompareAndSwap(lowest, int64(l)) {
			return
		}
	}
}

func (h *sessionLogs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level) || int64(level) >= h.state.lowest.Load()
}

func (h *sessionLogs) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	srv := h.state.srv.Load()
	if srv == nil || int64(r.Level) < h.state.lowest.Load() {
		return err
	}
	session := h.session
	data := map[string]any{"message": r.Message}
	add := func(a slog.Attr) {
		if a.Key == "session" && h.group == "" {
			session = a.Value.String()
			return // the client knows its own session
		}
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		data[key] = a.Value.Resolve().Any()
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	if session == "" {
		return err
	}
	var sink *requestSink
	var want slog.Level
	if v, ok := h.state.requests.Load(session); ok {
		sink = v.(*requestSink)
		want = slog.Level(sink.level.Load())
	} else if v, ok := h.state.levels.Load(session); ok {
		want = v.(slog.Level)
	} else {
		return err
	}
	if r.Level < want {
		return err
	}
	for k, v := range data {
		if e, ok := v.(error); ok {
			data[k] = e.Error() // errors marshal as {} otherwise
		} else if d, ok := v.(interface{ String() string }); ok {
			data[k] = d.String() // durations, times: as the log prints them
		}
	}
	// The session may be gone, not initialized, or not want this level:
	// none of that concerns the server's log.
	if sink != nil {
		_ = srv.SendNotificationToClient(srv.WithContext(context.Background(), sink.cs), "notifications/message",
			map[string]any{"level": mcpLevel(r.Level), "logger": "mcp-sandbox", "data": data})
		return err
	}
	_ = srv.SendLogMessageToSpecificClient(session, mcp.NewLoggingMessageNotification(mcpLevel(r.Level), "mcp-sandbox", data))
	return err
}

func (h *sessionLogs) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.attrs = append(append([]slog.Attr{}, h.attrs...), attrs...)
	for _, a := range attrs {
		if a.Key == "session" && h.group == "" {
			c.session = a.Value.String()
		}
	}
	return &c
}

func (h *sessionLogs) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}

// mcpLevel maps a slog level to the MCP (syslog) level clients filter on.
func mcpLevel(l slog.Level) mcp.LoggingLevel {
	switch {
	case l >= slog.LevelError:
		return mcp.LoggingLevelError
	case l >= slog.LevelWarn:
		return mcp.LoggingLevelWarning
	case l >= slog.LevelInfo:
		return mcp.LoggingLevelInfo
	default:
		return mcp.LoggingLevelDebug
	}
}

// slogLevel is the lowest slog level whose records a client that set level
// wants.
func slogLevel(level mcp.LoggingLevel) slog.Level {
	switch level {
	case mcp.LoggingLevelDebug:
		return slog.LevelDebug
	case mcp.LoggingLevelInfo:
		return slog.LevelInfo
	case mcp.LoggingLevelNotice, mcp.LoggingLevelWarning:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}
