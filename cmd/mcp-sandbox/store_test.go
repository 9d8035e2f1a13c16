package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"

	"github.com/mcp-sandbox/mcp-sandbox/session"
	"github.com/mcp-sandbox/mcp-sandbox/session/redistest"
)

func TestSessionStoreSetting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		want  string
		error string
	}{
		{"default", nil, "memory", ""},
		{"memory in any case", []string{"--session-store", "Memory"}, "memory", ""},
		{"redis over HTTP", []string{"--http", ":0", "--session-store", "redis://127.0.0.1:6379/0"}, "redis://127.0.0.1:6379/0", ""},
		{"TLS", []string{"--http", ":0", "--session-store", "rediss://u:p@cache:6380/2"}, "rediss://u:p@cache:6380/2", ""},
		{"not a store", []string{"--http", ":0", "--session-store", "http://cache"}, "", `invalid value "http://cache" for --session-store (MCP_SANDBOX_SESSION_STORE): use "memory" or a Redis URL`},
		{"shared store over stdio", []string{"--session-store", "redis://127.0.0.1:6379/0"}, "", "a shared store serves HTTP sessions only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(append([]string{"--env-file", os.DevNull}, tc.args...), func(string) (string, bool) { return "", false }, io.Discard)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("got %v, want an error containing %q", err, tc.error)
				}
				return
			}
			if err != nil || cfg.SessionStore != tc.want {
				t.Fatalf("got %q, %v; want %q", cfg.SessionStore, err, tc.want)
			}
		})
	}
}

// A Redis that does not answer stops the server at start-up with one line
// naming the setting, rather than failing every call later.
func TestUnreachableSessionStoreIsRefusedAtStart(t *testing.T) {
	cfg, err := loadConfig([]string{"--env-file", os.DevNull, "--state-dir", t.TempDir(), "--http", ":0",
		"--session-store", "redis://127.0.0.1:1/0"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = newApp(cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "--session-store") || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("want a refusal naming --session-store, got %v", err)
	}
}

// Over HTTP with the Redis store, a session's sandboxes are in Redis while
// it lives, and a DELETE ends it there and destroys them.
func TestHTTPSessionInRedis(t *testing.T) {
	r := redistest.Start(t)
	ts, state := newHTTP(t, "--http", ":0", "--session-store", r.URL)
	c, err := client.NewStreamableHttpClient(ts.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)
	res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo hi > f"})
	if isErr {
		t.Fatal(text)
	}
	sid := c.GetTransport().(*transport.StreamableHTTP).GetSessionId()
	rdb := r.Client(t)
	ctx := context.Background()
	// The record is under the session's owner hash: a session ID is a
	// bearer secret, kept out of the store.
	keys := rdb.Keys(ctx, "mcp-sandbox:session:*").Val()
	if len(keys) != 1 || strings.Contains(keys[0], sid) {
		t.Fatalf("session records in Redis: %v, want one, not named by the session ID %s", keys, sid)
	}
	key := keys[0]
	raw, err := rdb.Get(ctx, key).Result()
	if err != nil {
		t.Fatalf("no record of the session in Redis: %v", err)
	}
	var rec session.Record
	if err := json.Unmarshal([]byte(raw), &rec); err != nil || rec.Current != res["sandbox_id"] || len(rec.Sandboxes) != 1 {
		t.Fatalf("record %s, want the current sandbox %v", raw, res["sandbox_id"])
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl <= 0 {
		t.Fatalf("the record has no idle expiry (TTL %v)", ttl)
	}
	c.Close() // sends DELETE
	waitFor(t, "sandbox removed after DELETE", func() bool { return len(sandboxDirs(t, state)) == 0 })
	if v := rdb.Get(ctx, key).Val(); v != "ended" {
		t.Fatalf("after DELETE the record reads %q, want it ended", v)
	}
}
