package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// A client that gives up on a run_command (notifications/cancelled, or
// the HTTP request going away) loses no work: the command and what it
// started run on (process_list shows them), and the server says so in its
// log.
func TestCancelledCallLeavesTheCommandRunning(t *testing.T) {
	for _, transport := range []string{"stdio", "http"} {
		t.Run(transport, func(t *testing.T) {
			state := t.TempDir()
			var c *client.Client
			var logs syncBuffer
			if transport == "stdio" {
				var err error
				c, err = client.NewStdioMCPClient(binary, []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				stderr, _ := client.GetStderr(c)
				go io.Copy(&logs, stderr)
				initialize(t, c)
			} else {
				ts, dir := newHTTPLogging(t, &logs)
				state = dir
				c = httpClient(t, ts.URL)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				req := mcp.CallToolRequest{}
				req.Params.Name = "run_command"
				req.Params.Arguments = map[string]any{"command": "echo $$ > sh.pid; sleep 1000 & echo $! > child.pid; wait"}
				_, err := c.CallTool(ctx, req)
				done <- err
			}()
			var pids []int
			for _, name := range []string{"sh.pid", "child.pid"} {
				pids = append(pids, waitPidFile(t, state, name))
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("call: %v", err)
			}
			waitFor(t, "the cancel in the log", func() bool {
				return strings.Contains(logs.String(), "run_command cancelled; the command runs on")
			})
			time.Sleep(300 * time.Millisecond)
			// The pids are the sandbox's own (a jail has its own pid
			// namespace): ask inside it.
			for _, pid := range pids {
				check := fmt.Sprintf(`if kill -0 %d 2>/dev/null && ! grep -q '^State:.*Z' /proc/%d/status; then echo alive; else echo dead; fi`, pid, pid)
				res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": check})
				if isErr || strings.TrimSpace(fmt.Sprint(res["stdout"])) != "alive" {
					t.Fatalf("pid %d died with the cancelled call: %v %s", pid, res, text)
				}
			}
		})
	}
}

func waitPidFile(t *testing.T, state, name string) int {
	t.Helper()
	var pid int
	waitFor(t, name, func() bool {
		matches, _ := filepath.Glob(filepath.Join(state, "local", "*", "root", name))
		if len(matches) != 1 {
			return false
		}
		b, _ := os.ReadFile(matches[0])
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		pid = n
		return err == nil && strings.HasSuffix(string(b), "\n")
	})
	return pid
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
