package tools_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// One call is one interactive step: write a line, get back what the program
// answered, stopping at a prompt, a quiet period or the exit.
func TestWriteStdinWaitsForTheAnswer(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	started := mustCall(t, c, "process_start", map[string]any{
		"command":         `printf '> ' >&2; while read l; do sleep 0.2; echo "got $l"; printf '> ' >&2; done; echo bye`,
		"keep_stdin_open": true,
	})
	h := started["process_id"]
	// The first prompt comes before any write: take it as a user would.
	if p := mustCall(t, c, "process_output", map[string]any{"process_id": h, "stream": "stderr", "wait_seconds": 5}); p["data"] != "> " {
		t.Fatalf("first prompt: %v", p)
	}
	for _, tc := range []struct {
		name                  string
		args                  map[string]any
		stdout, stderr, until string
		exit                  bool
	}{
		{"prompt", map[string]any{"data": "a\n", "wait_for": `> $`}, "got a\n", "> ", "pattern", false},
		{"quiet", map[string]any{"data": "b\n", "quiet_seconds": 0.5}, "got b\n", "> ", "quiet", false},
		{"exit", map[string]any{"data": "c\n", "close": true, "wait_seconds": 10}, "got c\nbye\n", "> ", "exit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.args["process_id"] = h
			start := time.Now()
			res, m := call(t, c, "process_write_stdin", tc.args)
			if res.IsError || m["stdout"] != tc.stdout || m["stderr"] != tc.stderr || m["stopped_by"] != tc.until || time.Since(start) > 5*time.Second {
				t.Fatalf("got %v after %v (%s), want stdout %q stderr %q stopped_by %s", m, time.Since(start), text(res), tc.stdout, tc.stderr, tc.until)
			}
			if tc.exit && (m["running"] != false || m["exit_code"] != 0.0) {
				t.Errorf("after the exit: %v", m)
			}
			if !strings.Contains(text(res), strings.TrimSuffix(tc.stdout, "\n")) {
				t.Errorf("the text does not show the answer: %q", text(res))
			}
		})
	}
	res, _ := call(t, c, "process_write_stdin", map[string]any{"process_id": h, "data": "x", "wait_for": "("})
	if !res.IsError || !strings.Contains(text(res), "wait_for is not a valid regular expression") {
		t.Errorf("a bad pattern: %q", text(res))
	}
}
