package httpguard

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Bodies in flight stay within the budget: a large request that does not
// fit waits for room, and gets 503 with Retry-After when none comes in
// time; a small one that fits goes through meanwhile.
func TestBodyBudget(t *testing.T) {
	const kib = 1 << 10
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	g := New(Config{MaxBodyBytes: 100 * kib, BodyBudget: 150 * kib, BodyBudgetWait: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ts := httptest.NewServer(g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		if r.Header.Get("X-Hold") != "" {
			<-release
		}
	})))
	t.Cleanup(ts.Close)
	post := func(size int, hold bool) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/mcp", strings.NewReader(strings.Repeat("x", size)))
		if hold {
			req.Header.Set("X-Hold", "1")
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	held := make(chan *http.Response, 1)
	go func() { held <- post(90*kib, true) }()
	<-entered
	if resp := post(40*kib, false); resp.StatusCode != http.StatusOK {
		t.Errorf("a body that fits beside the held one: %s", resp.Status)
	}
	start := time.Now()
	resp := post(90*kib, false)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || time.Since(start) < 300*time.Millisecond {
		t.Errorf("a body over the budget: %s, Retry-After %q after %v", resp.Status, resp.Header.Get("Retry-After"), time.Since(start))
	}
	waited := make(chan *http.Response, 1)
	go func() { waited <- post(90*kib, false) }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if resp := <-waited; resp.StatusCode != http.StatusOK {
		t.Errorf("a body that waited for room: %s", resp.Status)
	}
	if resp := <-held; resp.StatusCode != http.StatusOK {
		t.Errorf("the held request: %s", resp.Status)
	}
	if n := g.bodies.inFlight(); n != 0 {
		t.Errorf("%d body bytes still held after every request ended", n)
	}
	if resp := post(101*kib, false); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over the cap: %s, want 413 at once", resp.Status)
	}
}
