package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"

	"github.com/mcp-sandbox/mcp-sandbox/session/redistest"
)

// newBenchServer is an HTTP server in this process with the given session
// store, on its own state dir.
func newBenchServer(b *testing.B, store string) *httptest.Server {
	b.Helper()
	cfg, err := loadConfig([]string{"--state-dir", b.TempDir(), "--env-file", os.DevNull, "--http", ":0", "--auth", "none",
		"--session-store", store, "--max-sessions", "0", "--max-sessions-per-client", "0"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	h, mcpHTTP, _ := a.httpHandler()
	ts := httptest.NewServer(h)
	b.Cleanup(func() { mcpHTTP.Shutdown(context.Background()); ts.Close(); a.close() })
	return ts
}

// BenchmarkSessionStore (run with the default -benchtime: each part does
// its many calls once) compares, in one run, run_command("true") over
// HTTP with sessions in Redis and in memory (target: at most 1.3x, or
// +1 ms), and measures what 1,000 idle sessions cost in Redis (target:
// under 10 KiB each) and in the server's heap.
func BenchmarkSessionStore(b *testing.B) {
	r := redistest.Start(b)
	b.Run("run_command-true", func(b *testing.B) {
		const pairs = 500
		stores := []string{"memory", r.URL}
		calls := make([]func(), len(stores))
		for i, store := range stores {
			c := httpClient(b, newBenchServer(b, store).URL)
			req := mcp.CallToolRequest{}
			req.Params.Name, req.Params.Arguments = "run_command", map[string]any{"command": "true"}
			calls[i] = func() {
				if res, err := c.CallTool(context.Background(), req); err != nil || res.IsError {
					b.Fatal(err, res)
				}
			}
			calls[i]() // creates the sandbox
		}
		took := make([][]time.Duration, len(stores))
		for b.Loop() { // once at the default -benchtime: the calls are many
			for range pairs {
				for i, call := range calls { // interleaved, so both see the same machine load
					start := time.Now()
					call()
					took[i] = append(took[i], time.Since(start))
				}
			}
		}
		mem, red := median(took[0]), median(took[1])
		b.ReportMetric(float64(mem.Microseconds())/1000, "ms-median-memory")
		b.ReportMetric(float64(red.Microseconds())/1000, "ms-median-redis")
		b.ReportMetric(float64(red)/float64(mem), "x-redis/memory")
	})
	b.Run("idle-sessions-1000", func(b *testing.B) {
		const sessions = 1000
		rdb := r.Client(b)
		for b.Loop() { // once at the default -benchtime
			rdb.FlushAll(context.Background())
			ts := newBenchServer(b, r.URL)
			before := redisMemory(b, r)
			heapBefore := heap()
			for i := range sessions {
				startIdleSession(b, ts.URL, i)
			}
			b.ReportMetric(float64(redisMemory(b, r)-before)/sessions, "redis-bytes/session")
			b.ReportMetric(float64(heap()-heapBefore)/sessions, "server-heap-bytes/session")
			keys, _ := rdb.Keys(context.Background(), "mcp-sandbox:session:*").Result()
			var total int64
			for _, k := range keys {
				n, _ := rdb.MemoryUsage(context.Background(), k).Result()
				total += n
			}
			if len(keys) != sessions {
				b.Fatalf("%d session records in Redis, want %d", len(keys), sessions)
			}
			b.ReportMetric(float64(total)/float64(len(keys)), "record-bytes/session")
		}
	})
}

// startIdleSession initializes one session with raw HTTP, as a client that
// then goes idle.
func startIdleSession(b *testing.B, url string, i int) {
	post := func(body, sid string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("Mcp-Protocol-Version", mcp.LATEST_LEGACY_PROTOCOL_VERSION)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := post(fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"idle-%d","version":"1"}}}`,
		mcp.LATEST_LEGACY_PROTOCOL_VERSION, i), "")
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		b.Fatalf("initialize: %s", resp.Status)
	}
	if resp := post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, sid); resp.StatusCode != http.StatusAccepted {
		b.Fatalf("notifications/initialized: %s", resp.Status)
	}
}

func redisMemory(b *testing.B, r *redistest.Server) int64 {
	info, err := r.Client(b).Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
