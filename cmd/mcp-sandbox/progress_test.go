package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// Progress notifications arrive in order, with the output they announce,
// over both transports. The test does not rely on the last notification
// before the result: mcp-go can drop it over HTTP (PR #969). Eight ticks
// 250 ms apart give at least four notifications that are not the last.
func TestProgressOverStdioAndHTTP(t *testing.T) {
	const command = "for i in $(seq 1 8); do echo tick-$i; sleep 0.25; done"
	var want strings.Builder
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&want, "tick-%d\n", i)
	}
	for _, tc := range []struct {
		name    string
		connect func(t *testing.T) *client.Client
	}{
		{"stdio", func(t *testing.T) *client.Client {
			c, err := client.NewStdioMCPClient(binary, []string{"MCP_SANDBOX_STATE_DIR=" + t.TempDir(), "HOME=" + t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			initialize(t, c)
			return c
		}},
		{"http", func(t *testing.T) *client.Client {
			ts, _ := newHTTP(t)
			return httpClient(t, ts.URL)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // mostly waiting for the ticks
			c := tc.connect(t)
			var mu sync.Mutex
			var got []map[string]any
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method != "notifications/progress" {
					return
				}
				var m map[string]any
				b, _ := json.Marshal(n.Params.AdditionalFields)
				json.Unmarshal(b, &m)
				mu.Lock()
				got = append(got, m)
				mu.Unlock()
			})
			req := mcp.CallToolRequest{}
			req.Params.Name = "run_command"
			req.Params.Arguments = map[string]any{"command": command}
			req.Params.Meta = &mcp.Meta{ProgressToken: "job-" + tc.name}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := c.CallTool(ctx, req)
			if err != nil || res.IsError {
				t.Fatalf("run_command: %v %+v", err, res)
			}
			time.Sleep(100 * time.Millisecond) // stdio writes notifications from another goroutine
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d progress notifications", len(got))
			if len(got) < 4 {
				t.Fatalf("got %d progress notifications, want at least 4", len(got))
			}
			out := want.String()
			prev := 0.0
			for i, n := range got {
				p, _ := n["progress"].(float64)
				msg, _ := n["message"].(string)
				if n["progressToken"] != "job-"+tc.name {
					t.Fatalf("notification %d: token %v", i, n["progressToken"])
				}
				if p <= prev || int(p) > len(out) || msg == "" || !strings.HasSuffix(out[:int(p)], msg) {
					t.Fatalf("notification %d: progress %v (previous %v), message %q: not the output up to that byte", i, p, prev, msg)
				}
				prev = p
			}
		})
	}
}
