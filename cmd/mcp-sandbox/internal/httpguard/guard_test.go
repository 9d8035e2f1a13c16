package httpguard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

const testToken = "0123456789abcdef-test-token"

// testServer is an MCP server over Streamable HTTP behind a Guard, set up as
// cmd/mcp-sandbox does it.
type testServer struct {
	*httptest.Server
	guard    *Guard
	mcpHTTP  *server.StreamableHTTPServer
	limiter  *SessionLimiter
	events   *eventLog
	slowCall chan struct{} // closed when the slow tool has started
}

type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	ts := &testServer{events: &eventLog{}, slowCall: make(chan struct{})}
	hooks := &server.Hooks{}
	if cfg.Sessions == nil {
		cfg.Sessions = NewSessionLimiter(0, 0, 0)
	}
	ts.limiter = cfg.Sessions
	ts.limiter.AddHooks(hooks)
	hooks.AddOnUnregisterSession(func(context.Context, server.ClientSession) { ts.events.add("session ended") })
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}

	s := server.NewMCPServer("guard-test", "0", server.WithHooks(hooks))
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("echoes"), mcp.WithString("text")),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(req.GetString("text", "")), nil
		})
	var once sync.Once
	s.AddTool(mcp.NewTool("slow", mcp.WithDescription("takes 300ms")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			once.Do(func() { close(ts.slowCall) })
			time.Sleep(300 * time.Millisecond)
			ts.events.add("slow call finished")
			return mcp.NewToolResultText("done"), nil
		})
	ts.mcpHTTP = server.NewStreamableHTTPServer(s, server.WithStateful(true),
		server.WithStreamableHTTPProtocolVersions(mcp.LegacyProtocolVersions()...))
	ts.guard = New(cfg)
	mux := http.NewServeMux()
	mux.Handle("/mcp", ts.mcpHTTP)
	ts.Server = httptest.NewUnstartedServer(ts.guard.Handler(mux))
	ts.Config = NewServer(ts.guard.Handler(mux))
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"guard-test","version":"0"}}}`

type request struct {
	method  string
	path    string
	body    string
	headers map[string]string
}

func (ts *testServer) do(t *testing.T, r request) *http.Response {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/mcp"
	}
	req, err := http.NewRequest(r.method, ts.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// initialize starts a session and returns its ID.
func (ts *testServer) initialize(t *testing.T, headers map[string]string) string {
	t.Helper()
	resp := ts.do(t, request{body: initializeBody, headers: headers})
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("initialize: %s %s", resp.Status, b)
	}
	io.Copy(io.Discard, resp.Body)
	id := resp.Header.Get(sessionHeader)
	if id == "" {
		t.Fatal("initialize returned no session ID")
	}
	return id
}

// jsonRPCError decodes a rejection body and checks its shape.
func jsonRPCError(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("rejection body is not JSON-RPC: %v", err)
	}
	if body.JSONRPC != "2.0" || string(body.ID) != "null" || body.Error.Code == 0 || body.Error.Message == "" {
		t.Errorf("rejection body = %+v, want a JSON-RPC error with id null", body)
	}
	return body.Error.Message
}

func TestOrigin(t *testing.T) {
	origins, err := ParseOrigins("https://app.example.com, http://10.1.2.3:8080")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{Origins: origins})
	tests := []struct {
		origin string
		want   int
	}{
		{"", http.StatusOK},
		{"http://localhost", http.StatusOK},
		{"http://localhost:6274", http.StatusOK},
		{"https://127.0.0.1:3000", http.StatusOK},
		{"http://[::1]:8080", http.StatusOK},
		{"https://app.example.com", http.StatusOK},
		{"https://APP.example.com:443", http.StatusOK},
		{"http://10.1.2.3:8080", http.StatusOK},
		{"http://evil.example.com", http.StatusForbidden},
		{"https://app.example.com:8443", http.StatusForbidden},
		{"http://app.example.com", http.StatusForbidden},
		{"http://localhost.evil.example", http.StatusForbidden},
		{"http://127.0.0.2", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"file://", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			headers := map[string]string{}
			if tt.origin != "" {
				headers["Origin"] = tt.origin
			}
			resp := ts.do(t, request{body: initializeBody, headers: headers})
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %s, want %d", resp.Status, tt.want)
			}
			if tt.want == http.StatusForbidden {
				if msg := jsonRPCError(t, resp); !strings.Contains(msg, tt.origin) || !strings.Contains(msg, "--allowed-origins") {
					t.Errorf("message %q should name the origin and the setting that allows more", msg)
				}
			}
		})
	}
}

func TestOriginCheckedOnEveryMethod(t *testing.T) {
	ts := startServer(t, Config{})
	id := ts.initialize(t, nil)
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		resp := ts.do(t, request{method: method, body: `{"jsonrpc":"2.0","id":2,"method":"ping"}`,
			headers: map[string]string{"Origin": "http://evil.example", sessionHeader: id}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s with a foreign Origin: %s, want 403", method, resp.Status)
		}
	}
}

func TestParseOriginsRejectsMalformedEntries(t *testing.T) {
	for _, entry := range []string{"app.example.com", "https://app.example.com/path", "ftp://x.example", "https://user@x.example", "https://"} {
		if _, err := ParseOrigins(entry); err == nil || !strings.Contains(err.Error(), "scheme://host[:port]") {
			t.Errorf("ParseOrigins(%q) = %v, want an error naming the expected form", entry, err)
		}
	}
}

func TestBearerToken(t *testing.T) {
	ts := startServer(t, Config{Token: testToken})
	tests := []struct {
		name          string
		authorization string
		want          int
		wantChallenge string
	}{
		{"missing", "", http.StatusUnauthorized, `Bearer realm="mcp-sandbox"`},
		{"wrong", "Bearer wrong-token-wrong-token", http.StatusUnauthorized, `Bearer realm="mcp-sandbox", error="invalid_token"`},
		{"prefix of the token", "Bearer " + testToken[:len(testToken)-1], http.StatusUnauthorized, `Bearer realm="mcp-sandbox", error="invalid_token"`},
		{"other scheme", "Basic " + testToken, http.StatusUnauthorized, `Bearer realm="mcp-sandbox"`},
		{"bare token", testToken, http.StatusUnauthorized, `Bearer realm="mcp-sandbox"`},
		{"right", "Bearer " + testToken, http.StatusOK, ""},
		{"scheme is case-insensitive", "bearer " + testToken, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{}
			if tt.authorization != "" {
				headers["Authorization"] = tt.authorization
			}
			resp := ts.do(t, request{body: initializeBody, headers: headers})
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %s, want %d", resp.Status, tt.want)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantChallenge)
			}
			if tt.want == http.StatusUnauthorized {
				if msg := jsonRPCError(t, resp); !strings.Contains(msg, "bearer token") {
					t.Errorf("message %q should say the bearer token is missing or wrong", msg)
				}
			}
		})
	}
}

func TestBodyCap(t *testing.T) {
	const limit = 1024
	ts := startServer(t, Config{MaxBodyBytes: limit})
	id := ts.initialize(t, nil)
	call := func(size int) string {
		text := strings.Repeat("x", size)
		return `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + text + `"}}}`
	}
	overhead := len(call(0))
	tests := []struct {
		name    string
		body    string
		chunked bool
		want    int
	}{
		{"at the limit", call(limit - overhead), false, http.StatusOK},
		{"one byte over", call(limit - overhead + 1), false, http.StatusRequestEntityTooLarge},
		{"far over", call(10 * limit), false, http.StatusRequestEntityTooLarge},
		{"over, without Content-Length", call(2 * limit), true, http.StatusRequestEntityTooLarge},
		{"under, without Content-Length", call(10), true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length, so the client sends it chunked
			}
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", body)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set(sessionHeader, id)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status = %s (%s), want %d", resp.Status, b, tt.want)
			}
			if tt.want == http.StatusRequestEntityTooLarge {
				if msg := jsonRPCError(t, resp); !strings.Contains(msg, "1024 bytes") || !strings.Contains(msg, "--max-body-bytes") {
					t.Errorf("message %q should give the limit and the setting", msg)
				}
			} else if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), `"result"`) {
				t.Errorf("body = %s, want a tool result", b)
			}
		})
	}
}

func TestSessionLifecycle(t *testing.T) {
	ts := startServer(t, Config{})
	id := ts.initialize(t, nil)
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`

	tests := []struct {
		name    string
		req     request
		want    int
		wantMsg string
	}{
		{"POST in a live session", request{body: ping, headers: map[string]string{sessionHeader: id}}, http.StatusOK, ""},
		{"POST with an unknown session", request{body: ping, headers: map[string]string{sessionHeader: "mcp-session-00000000-0000-0000-0000-000000000000"}}, http.StatusNotFound, ""},
		{"GET without a session", request{method: http.MethodGet}, http.StatusBadRequest, "Mcp-Session-Id"},
		{"GET with an unknown session", request{method: http.MethodGet, headers: map[string]string{sessionHeader: "mcp-session-00000000-0000-0000-0000-000000000000"}}, http.StatusNotFound, "initialize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := ts.do(t, tt.req)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %s, want %d", resp.Status, tt.want)
			}
			if tt.wantMsg != "" {
				if msg := jsonRPCError(t, resp); !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message %q should mention %q", msg, tt.wantMsg)
				}
			}
		})
	}
	if got := ts.limiter.Live(); got != 1 {
		t.Errorf("live sessions = %d, want 1: a rejected GET must not mint a session", got)
	}

	del := ts.do(t, request{method: http.MethodDelete, headers: map[string]string{sessionHeader: id}})
	if del.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %s", del.Status)
	}
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		resp := ts.do(t, request{method: method, body: ping, headers: map[string]string{sessionHeader: id}})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s after DELETE: %s, want 404", method, resp.Status)
		}
	}
	for _, tt := range []struct {
		id   string
		want int
	}{{"never-issued", http.StatusNotFound}, {"", http.StatusBadRequest}} {
		headers := map[string]string{}
		if tt.id != "" {
			headers[sessionHeader] = tt.id
		}
		if resp := ts.do(t, request{method: http.MethodDelete, headers: headers}); resp.StatusCode != tt.want {
			t.Errorf("DELETE of session %q: %s, want %d", tt.id, resp.Status, tt.want)
		}
	}
}

func TestHealthz(t *testing.T) {
	ts := startServer(t, Config{Token: testToken})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp := ts.do(t, request{method: method, path: HealthPath, headers: map[string]string{"Origin": "http://elsewhere.example"}})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s %s without a token: %s, want 200 (load balancers have no token)", method, HealthPath, resp.Status)
		}
	}
	resp := ts.do(t, request{method: http.MethodGet, path: HealthPath})
	if b, _ := io.ReadAll(resp.Body); string(b) != "ok\n" {
		t.Errorf("body = %s", b)
	}
	if resp := ts.do(t, request{method: http.MethodPost, path: HealthPath}); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %s, want 405", HealthPath, resp.Status)
	}
	ts.guard.Drain()
	if resp := ts.do(t, request{method: http.MethodGet, path: HealthPath}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s while draining: %s, want 503", HealthPath, resp.Status)
	}
}

// TestShutdownFinishesCallsThenEndsSessions: a tool call in flight when
// shutdown starts completes and is answered; the session (and so its
// sandboxes) is ended only after it; an open GET stream does not hold
// shutdown up; new requests are refused.
func TestShutdownFinishesCallsThenEndsSessions(t *testing.T) {
	ts := startServer(t, Config{})
	id := ts.initialize(t, nil)
	headers := map[string]string{sessionHeader: id, "Mcp-Protocol-Version": "2025-11-25"}

	stream := ts.do(t, request{method: http.MethodGet, headers: headers})
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %s", stream.Status)
	}
	streamEnded := make(chan struct{})
	go func() {
		io.Copy(io.Discard, bufio.NewReader(stream.Body))
		close(streamEnded)
	}()

	type result struct {
		status int
		body   string
	}
	callDone := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			callDone <- result{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		callDone <- result{resp.StatusCode, string(b)}
	}()
	<-ts.slowCall

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := Shutdown(ctx, ts.guard, ts.Config, ts.mcpHTTP, time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown took %v: the GET stream held it up", took)
	}
	got := <-callDone
	if got.status != http.StatusOK || !strings.Contains(got.body, "done") {
		t.Errorf("in-flight call: %d %s, want its result", got.status, got.body)
	}
	select {
	case <-streamEnded:
	case <-time.After(2 * time.Second):
		t.Error("GET stream still open after Shutdown")
	}
	if events := ts.events.list(); strings.Join(events, ",") != "slow call finished,session ended" {
		t.Errorf("events = %v, want the call to finish before the session ends", events)
	}
}

func TestShutdownRefusesNewRequestsWhileDraining(t *testing.T) {
	ts := startServer(t, Config{})
	ts.guard.Drain()
	resp := ts.do(t, request{body: initializeBody})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("initialize while draining: %s, want 503", resp.Status)
	}
	if msg := jsonRPCError(t, resp); !strings.Contains(msg, "shutting down") {
		t.Errorf("message %q should say the server is shutting down", msg)
	}
}

func TestServerTimeouts(t *testing.T) {
	srv := NewServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 || srv.ReadTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Errorf("server limits not set: %+v", srv)
	}
	if srv.WriteTimeout != 0 {
		t.Errorf("WriteTimeout = %v would cut long streamed tool calls", srv.WriteTimeout)
	}
}
