package tools_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// listUntil polls process_list until ok accepts it.
func listUntil(t *testing.T, c *client.Client, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	var last map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if last = mustCall(t, c, "process_list", nil); ok(last) {
			return last
		}
	}
	t.Fatalf("process_list never showed %s: %v", what, last)
	return nil
}

func entries(m map[string]any, key string) []map[string]any {
	var out []map[string]any
	for _, e := range m[key].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// A cancelled call loses no work: the command runs on, process_list shows
// it (in the foreground, then as a process once its wait is over), and
// process_kill stops it with everything it started.
func TestCancelledRunCommandRunsOn(t *testing.T) {
	for _, tc := range runPaths {
		t.Run(tc.name, func(t *testing.T) {
			c := newClients(t, tools.DefaultLimits, tc.wrap, 1)[0]
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				res, err := callCtx(ctx, c, "run_command", map[string]any{"command": "echo $$ > sh.pid; sleep 1000 & echo $! > child.pid; echo started; wait", "wait_seconds": 1.5}, nil)
				if err == nil && !res.IsError {
					err = fmt.Errorf("the call succeeded: %s", text(res))
				} else {
					err = nil
				}
				errc <- err
			}()
			pids := []int{waitPid(t, c, "sh.pid"), waitPid(t, c, "child.pid")}
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			listUntil(t, c, "the call in the foreground", func(m map[string]any) bool {
				fg := entries(m, "foreground")
				return len(fg) == 1 && fg[0]["command"] != nil && fg[0]["process_id"] == nil
			})
			if tc.name == "exec-only" {
				return // no processes: it runs until its timeout, listed as foreground
			}
			m := listUntil(t, c, "the command as a process", func(m map[string]any) bool {
				ps := entries(m, "processes")
				return len(ps) == 1 && ps[0]["running"] == true && ps[0]["stdout_bytes"] == float64(len("started\n")) && len(entries(m, "foreground")) == 0
			})
			for _, pid := range pids {
				if !alive(t, c, pid) {
					t.Fatalf("process %d died with the call", pid)
				}
			}
			killed := mustCall(t, c, "process_kill", map[string]any{"process_id": entries(m, "processes")[0]["process_id"], "signal": "KILL"})
			if killed["running"] != false {
				t.Fatalf("process_kill: %v", killed)
			}
			deadline := time.Now().Add(time.Second)
			for _, pid := range pids {
				for alive(t, c, pid) {
					if time.Now().After(deadline) {
						t.Fatalf("process %d still runs a second after process_kill", pid)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// A cancelled call whose command ends before its wait is over leaves the
// result it would have returned in process_list.
func TestAbandonedRunCommandKeepsItsResult(t *testing.T) {
	for _, tc := range runPaths {
		t.Run(tc.name, func(t *testing.T) {
			c := newClients(t, tools.DefaultLimits, tc.wrap, 1)[0]
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := callCtx(ctx, c, "run_command", map[string]any{"command": "echo $$ > sh.pid; sleep 0.5; echo done; echo oops >&2; exit 3", "wait_seconds": 20}, nil)
				errc <- err
			}()
			waitPid(t, c, "sh.pid")
			cancel()
			<-errc
			m := listUntil(t, c, "the abandoned result", func(m map[string]any) bool { return len(entries(m, "abandoned")) == 1 })
			r := entries(m, "abandoned")[0]
			if r["stdout"] != "done\n" || r["stderr"] != "oops\n" || r["exit_code"] != 3.0 || r["command"] == nil {
				t.Fatalf("abandoned result: %v", r)
			}
		})
	}
}
