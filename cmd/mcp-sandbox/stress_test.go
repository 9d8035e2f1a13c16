package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// stressEnv tunes TestRunCommandOutputUnderLoad: MCP_SANDBOX_STRESS_CALLS
// calls per session (default 100), bounded by MCP_SANDBOX_STRESS_SECONDS
// of calling (default 40).
func stressEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// A loaded server still returns every byte a command wrote: 100 HTTP
// sessions run `echo TOKEN-s-i` against a server held to one thread
// (GOMAXPROCS=1) while busy processes take the cores, and every single
// result must carry its own token and count.
func TestRunCommandOutputUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	const sessions = 100
	calls := stressEnv("MCP_SANDBOX_STRESS_CALLS", 100)
	budget := time.Duration(stressEnv("MCP_SANDBOX_STRESS_SECONDS", 40)) * time.Second

	url, server := startBinaryCmd(t, []string{"GOMAXPROCS=1"}, "--http", "127.0.0.1:0", "--auth", "none", "--max-sessions", "0", "--max-sessions-per-client", "0")

	// Every session first gets its sandbox (a jail to start, or a container),
	// so that what the budget measures is calls, not creations.
	clients := make([]*client.Client, sessions)
	var ready sync.WaitGroup
	var setupErrs atomic.Int64
	for s := range sessions {
		ready.Add(1)
		go func() {
			defer ready.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := client.NewStreamableHttpClient(url)
			if err == nil {
				err = startSession(ctx, c)
			}
			if err == nil {
				req := mcp.CallToolRequest{}
				req.Params.Name = "run_command"
				req.Params.Arguments = map[string]any{"command": "true"}
				var res *mcp.CallToolResult
				if res, err = c.CallTool(ctx, req); err == nil && res.IsError {
					err = fmt.Errorf("%v", res.Content)
				}
			}
			if err != nil {
				setupErrs.Add(1)
				t.Errorf("session %d: %v", s, err)
				return
			}
			clients[s] = c
			t.Cleanup(func() { c.Close() })
		}()
	}
	ready.Wait()
	if setupErrs.Load() > 0 {
		t.FailNow()
	}

	// Busy processes beside it: the server's copier goroutines must wait
	// for the CPU, as on a machine shared with other work.
	for range runtime.NumCPU() {
		hog := exec.Command("/bin/sh", "-c", "while :; do :; done")
		hog.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			syscall.Kill(-hog.Process.Pid, syscall.SIGKILL)
			hog.Wait()
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	var done, bad atomic.Int64
	var mu sync.Mutex
	var examples []string
	var wg sync.WaitGroup
	fail := func(format string, args ...any) {
		bad.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(examples) < 5 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[s]
			for i := 0; i < calls && ctx.Err() == nil; i++ {
				want := fmt.Sprintf("TOKEN-%d-%d\n", s, i)
				req := mcp.CallToolRequest{}
				req.Params.Name = "run_command"
				req.Params.Arguments = map[string]any{"command": "echo " + want[:len(want)-1]}
				callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				res, err := c.CallTool(callCtx, req)
				cancel()
				if err != nil {
					fail("call %d of session %d: %v", i, s, err)
					continue
				}
				done.Add(1)
				var out struct {
					Stdout      string `json:"stdout"`
					StdoutBytes int    `json:"stdout_bytes"`
					ExitCode    int    `json:"exit_code"`
				}
				b, _ := json.Marshal(res.StructuredContent)
				json.Unmarshal(b, &out)
				if res.IsError || out.Stdout != want || out.StdoutBytes != len(want) || out.ExitCode != 0 {
					fail("want %q, got %+v (tool error %v)", want, out, res.IsError)
				}
			}
		}()
	}
	wg.Wait()
	if server.ProcessState != nil {
		t.Fatal("the server exited during the run")
	}
	t.Logf("%d calls from %d sessions, %d with output missing or wrong", done.Load(), sessions, bad.Load())
	if bad.Load() > 0 {
		t.Errorf("%d of %d run_command results lost output, e.g.:\n%v", bad.Load(), done.Load(), examples)
	}
	if done.Load() < sessions*5 {
		t.Errorf("only %d calls in %v: too few to tell", done.Load(), budget)
	}
}

// startSession is initialize without testing.T, for use off the test's
// goroutine.
func startSession(ctx context.Context, c *client.Client) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "stress", Version: "1"}
	_, err := c.Initialize(ctx, req)
	return err
}
