package tools_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// A session runs calls side by side up to its bound; a call over it is
// refused at once with what to do, and the session's own calls are counted
// apart from another session's.
func TestCallsPerSessionAreBounded(t *testing.T) {
	lim := tools.DefaultLimits
	lim.MaxCallsPerSession = 2
	cs := newClients(t, lim, nil, 2)
	c, other := cs[0], cs[1]
	mustCall(t, c, "run_command", map[string]any{"command": "true"})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { mustCall(t, c, "run_command", map[string]any{"command": "sleep 2"}) })
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	res, _ := call(t, c, "run_command", map[string]any{"command": "echo third"})
	if !res.IsError || !strings.Contains(text(res), "already has 2 tool calls running") || time.Since(start) > time.Second {
		t.Errorf("third call: isError=%v after %v: %s", res.IsError, time.Since(start), text(res))
	}
	if out := mustCall(t, other, "run_command", map[string]any{"command": "echo other"}); out["stdout"] != "other\n" {
		t.Errorf("another session's call: %v", out)
	}
	wg.Wait()
	if out := mustCall(t, c, "run_command", map[string]any{"command": "echo after"}); out["stdout"] != "after\n" {
		t.Errorf("call after the long ones ended: %v", out)
	}
}
