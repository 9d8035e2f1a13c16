package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/session"
	"github.com/mcp-sandbox/mcp-sandbox/session/redistest"
)

// replicaSet is n servers in this process sharing one Redis and one state
// dir, behind a round-robin balancer with no stickiness: consecutive
// requests land on different replicas.
type replicaSet struct {
	ts       *httptest.Server
	state    string
	handlers []http.Handler
	served   []atomic.Int64
	stop     []func() // shuts replica i down as SIGTERM does
}

func newReplicaSet(t *testing.T, n int, redisURL string, extraArgs ...string) *replicaSet {
	t.Helper()
	rs := &replicaSet{state: t.TempDir(), served: make([]atomic.Int64, n)}
	t.Cleanup(func() { destroyLeftSandboxes(rs.state) }) // after the replicas stop
	for range n {
		args := append([]string{"--state-dir", rs.state, "--env-file", os.DevNull, "--http", ":0", "--auth", "none", "--session-store", redisURL}, extraArgs...)
		cfg, err := loadConfig(args, func(string) (string, bool) { return "", false }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		a, err := newApp(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		h, mcpHTTP, _ := a.httpHandler()
		rs.handlers = append(rs.handlers, h)
		var once sync.Once
		stop := func() { once.Do(func() { mcpHTTP.Shutdown(context.Background()); a.close() }) }
		rs.stop = append(rs.stop, stop)
		t.Cleanup(stop)
	}
	var next atomic.Int64
	rs.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(next.Add(1)-1) % n
		rs.served[i].Add(1)
		rs.handlers[i].ServeHTTP(w, r)
	}))
	t.Cleanup(rs.ts.Close)
	return rs
}

// Calls of one session spread over three replicas see one sandbox, its
// files and its background process; a DELETE on any replica ends the
// session on all of them, and its sandbox goes.
func TestReplicasServeOneSession(t *testing.T) {
	r := redistest.Start(t)
	rs := newReplicaSet(t, 3, r.URL)
	c := httpClient(t, rs.ts.URL)

	res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo one > notes.txt"})
	if isErr {
		t.Fatal(text)
	}
	box := res["sandbox_id"].(string)
	proc, isErr, text := callTool(t, c, "process_start", map[string]any{"command": "cat notes.txt; sleep 1000"})
	if isErr {
		t.Fatal(text)
	}
	for i := range 6 {
		res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "cat notes.txt"})
		if isErr || res["sandbox_id"] != box || !strings.Contains(res["stdout"].(string), "one") {
			t.Fatalf("call %d: %v %q, want sandbox %s printing \"one\"", i, res, text, box)
		}
		out, isErr, text := callTool(t, c, "process_output", map[string]any{"process_id": proc["process_id"], "wait_seconds": 5})
		if isErr || !strings.Contains(out["data"].(string), "one") {
			t.Fatalf("process_output %d: %v %q", i, out, text)
		}
	}
	for i := range rs.served {
		if rs.served[i].Load() < 4 {
			t.Errorf("replica %d served %d requests: the calls did not spread", i, rs.served[i].Load())
		}
	}
	list, _, _ := callTool(t, c, "sandbox_list", nil)
	if boxes := list["sandboxes"].([]any); len(boxes) != 1 {
		t.Errorf("sandbox_list: %v, want the one sandbox", list)
	}

	sid := c.GetTransport().(*transport.StreamableHTTP).GetSessionId()
	c.Close() // DELETE, on whichever replica is next
	waitFor(t, "sandbox removed after DELETE", func() bool { return len(sandboxDirs(t, rs.state)) == 0 })
	for i, h := range rs.handlers {
		if code := postWithSession(h, sid); code != http.StatusNotFound {
			t.Errorf("replica %d after DELETE: %d, want 404", i, code)
		}
		if code := postWithSession(h, "no-such-session"); code != http.StatusNotFound {
			t.Errorf("replica %d, unknown session: %d, want 404", i, code)
		}
	}
}

// A replica that shuts down (SIGTERM) leaves its sessions to the others:
// the session it started goes on with its sandbox.
func TestReplicaShutdownLeavesItsSessions(t *testing.T) {
	r := redistest.Start(t)
	rs := newReplicaSet(t, 2, r.URL)
	c := httpClient(t, rs.ts.URL)
	res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo kept > f"})
	if isErr {
		t.Fatal(text)
	}
	rs.stop[0]()
	rs.handlers[0] = rs.handlers[1] // the balancer drops the stopped replica
	res2, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "cat f"})
	if isErr || res2["sandbox_id"] != res["sandbox_id"] || res2["stdout"] != "kept\n" {
		t.Fatalf("after one replica shut down: %v %q, want sandbox %v with its file", res2, text, res["sandbox_id"])
	}
	if dirs := sandboxDirs(t, rs.state); len(dirs) != 1 {
		t.Fatalf("sandboxes after one replica shut down: %v, want the session's one", dirs)
	}
}

// On docker, replicas sharing one engine serve one session: a sandbox made
// through one is used through the other, and the DELETE removes it.
func TestReplicasOnDocker(t *testing.T) {
	img := dockerImage(t)
	r := redistest.Start(t)
	rs := newReplicaSet(t, 2, r.URL, "--provider", "docker", "--docker-image", img, "--server-id", "test-replicas-"+time.Now().Format("150405.000000"))
	c := httpClient(t, rs.ts.URL)
	res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo one > /tmp/f"})
	if isErr {
		t.Fatal(text)
	}
	for i := range 4 {
		res2, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "cat /tmp/f"})
		if isErr || res2["sandbox_id"] != res["sandbox_id"] || res2["stdout"] != "one\n" {
			t.Fatalf("call %d: %v %q, want sandbox %v printing one", i, res2, text, res["sandbox_id"])
		}
	}
	c.Close()
	id := res["sandbox_id"].(string)
	waitFor(t, "the container removed after DELETE", func() bool {
		return exec.Command("docker", "inspect", id).Run() != nil
	})
}

// A replica that never saw a session's initialize serves it as the one
// that did: progress notifications reach the client. Three calls over
// three replicas: at least two land elsewhere than the initialize.
func TestReplicasSendProgress(t *testing.T) {
	r := redistest.Start(t)
	rs := newReplicaSet(t, 3, r.URL)
	c := httpClient(t, rs.ts.URL)
	var mu sync.Mutex
	progress := 0
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			mu.Lock()
			progress++
			mu.Unlock()
		}
	})
	for i := range 3 {
		mu.Lock()
		progress = 0
		mu.Unlock()
		req := mcp.CallToolRequest{}
		req.Params.Name = "run_command"
		req.Params.Arguments = map[string]any{"command": "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.2; done"}
		req.Params.Meta = &mcp.Meta{ProgressToken: fmt.Sprint("job-", i)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := c.CallTool(ctx, req)
		cancel()
		if err != nil || res.IsError {
			t.Fatalf("call %d: %v %+v", i, err, res)
		}
		mu.Lock()
		got := progress
		mu.Unlock()
		if got < 3 {
			t.Errorf("call %d: %d progress notifications, want at least 3", i, got)
		}
	}
}

// rebuildSession gives a session made for one request what the session's
// initialize settled on another replica, and leaves one that knows alone.
func TestRebuildSessionFromTheRecord(t *testing.T) {
	rec := session.Record{Owner: "s@x", Protocol: &session.Protocol{Version: "2025-06-18",
		ClientInfo: json.RawMessage(`{"name":"agent","version":"2"}`), Capabilities: json.RawMessage(`{"roots":{"listChanged":true}}`)}}
	srv := server.NewMCPServer("t", "1")
	a := &app{logs: newSessionLogs(slog.DiscardHandler)}
	for _, tc := range []struct {
		name, version, want string
		rec                 any
	}{
		{"fresh session", "", "2025-06-18", rec},
		{"initialized here", "2025-03-26", "2025-03-26", rec},
		{"no record", "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &fakeSession{version: tc.version}
			ctx := srv.WithContext(context.Background(), s)
			if tc.rec != nil {
				ctx = context.WithValue(ctx, recordKey{}, tc.rec)
			}
			a.rebuildSession(ctx, nil)
			if s.version != tc.want {
				t.Errorf("protocol version %q, want %q", s.version, tc.want)
			}
			if tc.want == "2025-06-18" && (s.info.Name != "agent" || s.caps.Roots == nil || !s.caps.Roots.ListChanged) {
				t.Errorf("client info %+v, capabilities %+v: not the recorded ones", s.info, s.caps)
			}
		})
	}
}

type fakeSession struct {
	version string
	info    mcp.Implementation
	caps    mcp.ClientCapabilities
}

func (f *fakeSession) Initialize()                                         {}
func (f *fakeSession) Initialized() bool                                   { return true }
func (f *fakeSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return nil }
func (f *fakeSession) SessionID() string                                   { return "s" }
func (f *fakeSession) GetClientInfo() mcp.Implementation                   { return f.info }
func (f *fakeSession) SetClientInfo(i mcp.Implementation)                  { f.info = i }
func (f *fakeSession) GetClientCapabilities() mcp.ClientCapabilities       { return f.caps }
func (f *fakeSession) SetClientCapabilities(c mcp.ClientCapabilities)      { f.caps = c }
func (f *fakeSession) ProtocolVersion() string                             { return f.version }
func (f *fakeSession) SetProtocolVersion(v string)                         { f.version = v }

// postWithSession posts tools/list for session sid to h and returns the
// status.
func postWithSession(h http.Handler, sid string) int {
	req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// --max-sessions counts the sessions of every replica: with a cap of 2 and
// two sessions started through two replicas, a third initialize on either
// ends the idlest of them, or is refused with the reason when none is idle
// long enough.
func TestReplicasShareTheSessionCap(t *testing.T) {
	r := redistest.Start(t)
	t.Run("none idle", func(t *testing.T) {
		rs := newReplicaSet(t, 2, r.URL, "--max-sessions", "2", "--session-evict-idle", "1h")
		httpClient(t, rs.ts.URL)
		httpClient(t, rs.ts.URL)
		c, err := client.NewStreamableHttpClient(rs.ts.URL + "/mcp")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := mcp.InitializeRequest{}
		req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
		_, err = c.Initialize(ctx, req)
		if err == nil || !strings.Contains(err.Error(), "servers sharing this session store hold 2 live sessions") {
			t.Fatalf("third session over a shared cap of 2: %v", err)
		}
		r.Client(t).FlushAll(context.Background())
	})
	t.Run("idlest ended", func(t *testing.T) {
		rs := newReplicaSet(t, 2, r.URL, "--max-sessions", "2", "--session-evict-idle", "1ms")
		idle := httpClient(t, rs.ts.URL)
		if _, isErr, text := callTool(t, idle, "run_command", map[string]any{"command": "true"}); isErr {
			t.Fatal(text)
		}
		busy := httpClient(t, rs.ts.URL)
		time.Sleep(5 * time.Millisecond)
		callTool(t, busy, "run_command", map[string]any{"command": "true"})
		httpClient(t, rs.ts.URL)
		checkIdlestEnded(t, rs, 0, idle, busy)
	})
}

// With Redis down, calls fail with an error that says so and that the
// session is kept, and /healthz answers 503 with the reason; once Redis is
// back (persistence on), the same session goes on with its sandbox.
func TestReplicasRideOutARedisRestart(t *testing.T) {
	r := redistest.StartPersistent(t)
	rs := newReplicaSet(t, 2, r.URL)
	c := httpClient(t, rs.ts.URL)
	res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo kept > f"})
	if isErr {
		t.Fatal(text)
	}
	box := res["sandbox_id"]

	r.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "run_command", map[string]any{"command": "cat f"}
	if _, err := c.CallTool(ctx, req); err == nil || !strings.Contains(err.Error(), "the session store does not answer") {
		t.Errorf("call with Redis down: %v, want the store named", err)
	}
	resp, err := http.Get(rs.ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "session store:") {
		t.Errorf("/healthz with Redis down: %d %q", resp.StatusCode, body)
	}

	r.Start(t)
	res, isErr, text = callTool(t, c, "run_command", map[string]any{"command": "cat f"})
	if isErr || res["sandbox_id"] != box || !strings.Contains(res["stdout"].(string), "kept") {
		t.Fatalf("after Redis came back: %v %q, want sandbox %v with its file", res, text, box)
	}
	if resp, err := http.Get(rs.ts.URL + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz with Redis back: %v %v", resp, err)
	}
}

// Without persistence, a Redis restart forgets the sessions: they read as
// ended (404, so clients start a new one), as the README says, and new
// sessions work.
func TestReplicasRedisWithoutPersistenceForgets(t *testing.T) {
	r := redistest.Start(t)
	rs := newReplicaSet(t, 2, r.URL)
	c := httpClient(t, rs.ts.URL)
	if _, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "true"}); isErr {
		t.Fatal(text)
	}
	sid := c.GetTransport().(*transport.StreamableHTTP).GetSessionId()
	r.Stop()
	r.Start(t)
	for i, h := range rs.handlers {
		if code := postWithSession(h, sid); code != http.StatusNotFound {
			t.Errorf("replica %d, session from before the restart: %d, want 404", i, code)
		}
	}
	fresh := httpClient(t, rs.ts.URL)
	if _, isErr, text := callTool(t, fresh, "run_command", map[string]any{"command": "true"}); isErr {
		t.Fatal(text)
	}
}

// The local provider cannot be shared by replicas on different machines or
// state dirs: the second one is refused at start with the reason.
func TestReplicasRefuseLocalOnAnotherStateDir(t *testing.T) {
	r := redistest.Start(t)
	newReplicaSet(t, 1, r.URL)
	cfg, err := loadConfig([]string{"--state-dir", t.TempDir(), "--env-file", os.DevNull, "--http", ":0", "--auth", "none", "--session-store", r.URL},
		func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		a.close()
		t.Fatal("a replica with local sandboxes in another state dir was accepted")
	}
	if !strings.Contains(err.Error(), "the local provider cannot be shared by these replicas") || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("refusal: %v", err)
	}
}

// initializeAs starts a session as the named client, returning the error
// initialize got.
func initializeAs(t *testing.T, url, name string) (*client.Client, error) {
	t.Helper()
	c, err := client.NewStreamableHttpClient(url + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: name, Version: "1"}
	_, err = c.Initialize(ctx, req)
	return c, err
}

// --max-sessions-per-client counts a client's sessions on every replica:
// one client cannot hold every slot by spreading its sessions over them.
// Its extra session is refused (429, saying why) while another client still
// gets in; once one of its sessions is idle long enough, that one is ended
// for the new one instead.
func TestReplicasSharePerClientCap(t *testing.T) {
	t.Run("none idle", func(t *testing.T) {
		r := redistest.Start(t)
		rs := newReplicaSet(t, 2, r.URL, "--max-sessions-per-client", "2", "--session-evict-idle", "1h")
		for i := range 2 {
			if _, err := initializeAs(t, rs.ts.URL, "greedy"); err != nil {
				t.Fatalf("session %d of the client: %v", i, err)
			}
		}
		for i := range 2 { // on either replica
			init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"greedy","version":"1"}}}`
			code, _, body := httpPost(t, rs.ts.URL+"/mcp", init, nil)
			if code != http.StatusTooManyRequests || !strings.Contains(body, "holds 2 live sessions on the servers sharing this session store") {
				t.Fatalf("extra session %d of the client: %d %s, want a 429 saying why", i, code, body)
			}
		}
		if served := [2]int64{rs.served[0].Load(), rs.served[1].Load()}; served[0] == 0 || served[1] == 0 {
			t.Fatalf("requests per replica %v: the sessions did not spread", served)
		}
		other, err := initializeAs(t, rs.ts.URL, "polite")
		if err != nil {
			t.Fatalf("another client was locked out: %v", err)
		}
		if _, isErr, text := callTool(t, other, "run_command", map[string]any{"command": "true"}); isErr {
			t.Fatal(text)
		}
	})
	t.Run("idlest ended", func(t *testing.T) {
		r := redistest.Start(t)
		rs := newReplicaSet(t, 2, r.URL, "--max-sessions-per-client", "2", "--session-evict-idle", "1ms")
		idle, err := initializeAs(t, rs.ts.URL, "greedy")
		if err != nil {
			t.Fatal(err)
		}
		if _, isErr, text := callTool(t, idle, "run_command", map[string]any{"command": "true"}); isErr {
			t.Fatal(text)
		}
		busy, err := initializeAs(t, rs.ts.URL, "greedy")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		callTool(t, busy, "run_command", map[string]any{"command": "true"})
		if _, err := initializeAs(t, rs.ts.URL, "greedy"); err != nil {
			t.Fatalf("a third session with one idle: %v", err)
		}
		checkIdlestEnded(t, rs, 1, idle, busy)
	})
}

// checkIdlestEnded checks that a new session over the cap ended the idle
// one (its sandbox gone, its ID unknown to replica i) and not the busy one.
func checkIdlestEnded(t *testing.T, rs *replicaSet, i int, idle, busy *client.Client) {
	t.Helper()
	waitFor(t, "the idle session's sandbox removed", func() bool { return len(sandboxDirs(t, rs.state)) == 1 })
	sid := idle.GetTransport().(*transport.StreamableHTTP).GetSessionId()
	if code := postWithSession(rs.handlers[i], sid); code != http.StatusNotFound {
		t.Errorf("the evicted session: %d, want 404", code)
	}
	if _, isErr, text := callTool(t, busy, "run_command", map[string]any{"command": "true"}); isErr {
		t.Errorf("the session used last was ended: %s", text)
	}
}

// The level a client sets with logging/setLevel holds on every replica:
// set through one, it governs the log messages of calls that land on the
// others, and a later change through any replica reaches them all.
func TestReplicasKeepTheLogLevel(t *testing.T) {
	r := redistest.Start(t)
	rs := newReplicaSet(t, 2, r.URL)
	c := httpClient(t, rs.ts.URL)
	var mu sync.Mutex
	messages := 0
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/message" {
			mu.Lock()
			messages++
			mu.Unlock()
		}
	})
	setLevel := func(level mcp.LoggingLevel) {
		t.Helper()
		req := mcp.SetLevelRequest{}
		req.Params.Level = level
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.SetLevel(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	// create makes a sandbox (logged at info, for this session) and
	// returns how many log messages the client got for it.
	create := func() int {
		t.Helper()
		mu.Lock()
		messages = 0
		mu.Unlock()
		if _, isErr, text := callTool(t, c, "sandbox_create", nil); isErr {
			t.Fatal(text)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			mu.Lock()
			n := messages
			mu.Unlock()
			if n > 0 || time.Now().After(deadline) {
				return n
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	setLevel(mcp.LoggingLevelInfo)
	before := [2]int64{rs.served[0].Load(), rs.served[1].Load()}
	for i := range 4 {
		if n := create(); n == 0 {
			t.Errorf("create %d: no log message at level info", i)
		}
	}
	if rs.served[0].Load() == before[0] || rs.served[1].Load() == before[1] {
		t.Fatalf("the calls did not reach both replicas: %v then %d %d", before, rs.served[0].Load(), rs.served[1].Load())
	}
	setLevel(mcp.LoggingLevelError)
	for i := range 4 {
		if n := create(); n != 0 {
			t.Errorf("create %d after level error: %d info messages", i, n)
		}
	}
}
