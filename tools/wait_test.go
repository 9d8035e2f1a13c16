package tools_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// The calls a result suggests are calls this server accepts: a server with a
// one-second --wait-seconds must not suggest wait_seconds: 30.
func TestSuggestedWaitsRespectTheServer(t *testing.T) {
	lim := tools.DefaultLimits
	lim.Wait = time.Second
	c := newClient(t, lim)
	hint := regexp.MustCompile(`process_output \{process_id: "([^"]+)"(?:, byte_offset: \d+)?, wait_seconds: ([0-9.]+)\}`)
	for _, tc := range []struct{ tool, command string }{
		{"run_command", "sleep 3"},
		{"process_start", "sleep 3"},
	} {
		res, _ := call(t, c, tc.tool, map[string]any{"command": tc.command})
		m := hint.FindStringSubmatch(text(res))
		if res.IsError || m == nil {
			t.Fatalf("%s: no process_output hint in %q", tc.tool, text(res))
		}
		wait, _ := strconv.ParseFloat(m[2], 64)
		out, _ := call(t, c, "process_output", map[string]any{"process_id": m[1], "wait_seconds": wait})
		if out.IsError {
			t.Errorf("%s suggested wait_seconds: %s, which process_output refuses: %s", tc.tool, m[2], text(out))
		}
	}
}

// wait_seconds stays below the 60 s after which common clients give up:
// a longer one is refused up front, naming the cap, rather than cut.
func TestWaitIsCappedBelowClientTimeouts(t *testing.T) {
	lim := tools.DefaultLimits
	lim.Wait = 2 * time.Minute // a server setting above the cap does not lift it
	c := newClient(t, lim)
	for tool, args := range map[string]map[string]any{
		"run_command":    {"command": "true", "wait_seconds": 55},
		"process_output": {"process_id": "x:1", "wait_seconds": 55},
	} {
		res, _ := call(t, c, tool, args)
		if !res.IsError || !strings.Contains(text(res), "from 0 to 50 seconds") {
			t.Errorf("%s with wait_seconds 55: %q, want a refusal naming the 50 s cap", tool, text(res))
		}
	}
}

// A command moved to the background still dies at its timeout: the result
// says when, and the process dies then.
func TestBackgroundCommandSaysWhenItsTimeoutKillsIt(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	start := time.Now()
	res, m := call(t, c, "run_command", map[string]any{"command": "sleep 30", "wait_seconds": 0.3, "timeout_seconds": 3})
	killAt, err := time.Parse(time.RFC3339, m["kill_at"].(string))
	if res.IsError || err != nil || m["running"] != true {
		t.Fatalf("want a running command with kill_at, got %v (%v)", m, err)
	}
	if d := killAt.Sub(start); d < 2*time.Second || d > 4*time.Second {
		t.Errorf("kill_at is %v after the start, want about the 3 s timeout", d)
	}
	if want := "until " + killAt.Format("15:04:05 MST") + " when its timeout (3 seconds after it started) kills it"; !strings.Contains(text(res), want) {
		t.Errorf("result text %q does not say %q", text(res), want)
	}
	out := mustCall(t, c, "process_output", map[string]any{"process_id": m["process_id"], "wait_seconds": 10})
	if proc := out["process"].(map[string]any); proc["timed_out"] != true || time.Since(start) > 6*time.Second {
		t.Errorf("the process was not killed at kill_at: %v after %v", proc, time.Since(start))
	}
}
