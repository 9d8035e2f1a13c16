package httpguard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func initializeAs(client string) string {
	return strings.Replace(initializeBody, `"name":"guard-test"`, fmt.Sprintf(`"name":%q`, client), 1)
}

func (ts *testServer) initializeAs(t *testing.T, client string) string {
	t.Helper()
	resp := ts.do(t, request{body: initializeAs(client)})
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("initialize as %s: %s %s", client, resp.Status, b)
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Header.Get(sessionHeader)
}

func (ts *testServer) ping(t *testing.T, id string) int {
	t.Helper()
	resp := ts.do(t, request{body: `{"jsonrpc":"2.0","id":2,"method":"ping"}`, headers: map[string]string{sessionHeader: id}})
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// stream opens a GET stream on session id (a connected client) and returns
// a func that closes it; it returns once the guard counts it in flight.
func (ts *testServer) stream(t *testing.T, id string) (closeStream func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set(sessionHeader, id)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := ts.Client().Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !ts.limiter.busy(id) {
		if time.Now().After(deadline) {
			t.Fatal("the GET stream never reached the guard")
		}
		time.Sleep(5 * time.Millisecond)
	}
	closeStream = func() {
		cancel()
		<-done
		for ts.limiter.busy(id) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Cleanup(closeStream)
	return closeStream
}

func (l *SessionLimiter) busy(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.live[id]
	return s != nil && s.inFlight > 0
}

// At the cap a new session ends the longest-idle one, never one with a
// request in flight; only when all are busy is it refused.
func TestSessionCapEndsTheLongestIdle(t *testing.T) {
	ts := startServer(t, Config{Sessions: NewSessionLimiter(2, 0, 0)})
	first := ts.initializeAs(t, "cli")
	second := ts.initializeAs(t, "cli")
	ts.ping(t, first) // first is now the more recently active

	third := ts.initializeAs(t, "other")
	if ts.ping(t, second) != http.StatusNotFound || ts.ping(t, first) != http.StatusOK {
		t.Fatal("the new session should have ended the longest-idle one (second), not first")
	}
	if got, ended := ts.limiter.Live(), strings.Count(strings.Join(ts.events.list(), ","), "session ended"); got != 2 || ended != 1 {
		t.Fatalf("live = %d, ended = %d; want 2 live and the idlest ended through the unregister hooks", got, ended)
	}

	// Connected clients (an open GET stream) are not idle: with both busy
	// the new session is refused, with the cap and the setting named.
	closeFirst := ts.stream(t, first)
	ts.stream(t, third)
	resp := ts.do(t, request{body: initializeAs("late")})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("initialize with every session busy: %s, want 503 with Retry-After", resp.Status)
	}
	if msg := jsonRPCError(t, resp); !strings.Contains(msg, "2 live sessions") || !strings.Contains(msg, "--max-sessions") || !strings.Contains(msg, "none is idle") {
		t.Errorf("message %q should give the cap, the setting and why", msg)
	}
	closeFirst()
	ts.initializeAs(t, "late")
	if ts.ping(t, first) != http.StatusNotFound || ts.ping(t, third) != http.StatusOK {
		t.Fatal("once first's stream closed, it was the one to end")
	}
}

// A client opening session after session (and never DELETE-ing) ends its
// own oldest ones at its quota, and leaves other clients' sessions alone.
func TestPerClientQuotaDoesNotLockOthersOut(t *testing.T) {
	ts := startServer(t, Config{Sessions: NewSessionLimiter(10, 3, 0)})
	alice := ts.initializeAs(t, "agent")
	var cli []string
	for range 8 {
		cli = append(cli, ts.initializeAs(t, "inspector-cli"))
	}
	if ts.ping(t, alice) != http.StatusOK {
		t.Fatal("another client's session was ended by the CLI's")
	}
	for i, id := range cli {
		want := http.StatusNotFound
		if i >= len(cli)-3 {
			want = http.StatusOK
		}
		if got := ts.ping(t, id); got != want {
			t.Errorf("CLI session %d: ping %d, want %d (only its 3 newest live)", i, got, want)
		}
	}
	if got := ts.limiter.Live(); got != 4 {
		t.Errorf("live = %d, want 4 (1 agent + 3 CLI)", got)
	}
	ts.initializeAs(t, "agent") // room for others
	ts.stream(t, cli[5])
	ts.stream(t, cli[6])
	ts.stream(t, cli[7])
	resp := ts.do(t, request{body: initializeAs("inspector-cli")})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("initialize with the client's 3 sessions busy: %s, want 503", resp.Status)
	}
	if msg := jsonRPCError(t, resp); !strings.Contains(msg, "--max-sessions-per-client") {
		t.Errorf("message %q should name the setting", msg)
	}
}

// Concurrent initialize requests never take the live count over the cap.
func TestSessionCapHoldsUnderConcurrentInitialize(t *testing.T) {
	const limit = 3
	ts := startServer(t, Config{Sessions: NewSessionLimiter(limit, 0, 0)})
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(initializeBody))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("initialize: %s", resp.Status)
			}
			mu.Lock()
			peak = max(peak, ts.limiter.Live())
			mu.Unlock()
		}()
	}
	wg.Wait()
	if got := ts.limiter.Live(); got != limit || peak > limit {
		t.Errorf("live sessions = %d (peak %d), want %d", got, peak, limit)
	}
}

// A session active within --session-evict-idle is not ended for a new
// one (an agent thinking between calls keeps its sandboxes); once idle that
// long, it is.
func TestRecentlyActiveSessionsAreNotEnded(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	limiter := NewSessionLimiter(1, 0, time.Minute)
	limiter.now = func() time.Time { return time.Unix(0, clock.Load()) }
	ts := startServer(t, Config{Sessions: limiter})
	first := ts.initializeAs(t, "agent")

	clock.Add(int64(50 * time.Second))
	resp := ts.do(t, request{body: initializeAs("newcomer")})
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("initialize while the only session was active 50s ago: %s, want 503", resp.Status)
	}
	if msg := jsonRPCError(t, resp); !strings.Contains(msg, "--session-evict-idle") || !strings.Contains(msg, "1m0s") {
		t.Errorf("message %q should name the idle setting and its value", msg)
	}
	clock.Add(int64(11 * time.Second))
	ts.initializeAs(t, "newcomer")
	if ts.ping(t, first) != http.StatusNotFound {
		t.Fatal("the session idle for 61s should have made room")
	}
}

// A client is its address and clientInfo.name; behind a proxy, the address
// the proxy saw (the last X-Forwarded-For entry), not the proxy's.
func TestClientKey(t *testing.T) {
	const init = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"agent"}}}`
	for _, tc := range []struct {
		name, remote string
		forwarded    []string
		want         string
	}{
		{"direct", "10.0.0.5:4242", nil, `"agent"@10.0.0.5`},
		{"behind a proxy", "127.0.0.1:4242", []string{"192.0.2.7"}, `"agent"@192.0.2.7`},
		{"a chain: the nearest proxy's entry", "127.0.0.1:4242", []string{"198.51.100.1, 192.0.2.7"}, `"agent"@192.0.2.7`},
		{"several headers: the last", "127.0.0.1:4242", []string{"198.51.100.1", "192.0.2.8"}, `"agent"@192.0.2.8`},
		{"not an address: the peer's", "127.0.0.1:4242", []string{"evil\nline"}, `"agent"@127.0.0.1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(init))
			r.RemoteAddr = tc.remote
			for _, f := range tc.forwarded {
				r.Header.Add("X-Forwarded-For", f)
			}
			if got := ClientKey(r); got != tc.want {
				t.Errorf("ClientKey = %s, want %s", got, tc.want)
			}
			if body, _ := io.ReadAll(r.Body); string(body) != init {
				t.Errorf("the body was not left to read again: %q", body)
			}
		})
	}
}
