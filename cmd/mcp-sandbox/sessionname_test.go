package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// structured returns a tools/call response's structured result, failing
// the test on an error.
func structured(t *testing.T, resp map[string]any) map[string]any {
	t.Helper()
	res, _ := resp["result"].(map[string]any)
	if res == nil || res["isError"] == true {
		t.Fatalf("call failed: %v", resp)
	}
	sc, _ := res["structuredContent"].(map[string]any)
	if sc == nil {
		t.Fatalf("no structured result: %v", resp)
	}
	return sc
}

// A stdio server restarted under the same --session-name with
// --keep-sandboxes serves the session its predecessor left: sandbox_list
// shows the sandbox, calls without sandbox_id use it (its files are there),
// and the background process started before the restart is still paged.
func TestStdioSessionNameReattaches(t *testing.T) {
	state := t.TempDir()
	env := []string{"MCP_SANDBOX_SESSION_NAME=work", "MCP_SANDBOX_KEEP_SANDBOXES=true"}

	first := startStdioPeer(t, state, env...)
	first.call(t, 1, "run_command", map[string]any{"command": "echo before > notes.txt"})
	box := structured(t, first.wait(t, 1, 30*time.Second))["sandbox_id"].(string)
	first.call(t, 2, "process_start", map[string]any{"command": "echo started; sleep 2; echo after-restart; sleep 1000"})
	proc := structured(t, first.wait(t, 2, 30*time.Second))["process_id"].(string)
	// A second server under the same name while the first runs would
	// share its sandboxes unknowingly: refused.
	if out, err := runBinary(t, state, env...); err == nil || !strings.Contains(out, "another server is using this session name") {
		t.Errorf("second server under the same name: err %v, output %q", err, out)
	}
	first.stdin.Close()
	select {
	case <-first.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("first server did not exit after stdin EOF")
	}

	second := startStdioPeer(t, state, env...)
	second.call(t, 1, "sandbox_list", nil)
	list := structured(t, second.wait(t, 1, 30*time.Second))
	b, _ := json.Marshal(list)
	if !strings.Contains(string(b), box) {
		t.Fatalf("sandbox_list after the restart does not show %s: %s", box, b)
	}
	second.call(t, 2, "run_command", map[string]any{"command": "cat notes.txt"})
	res := structured(t, second.wait(t, 2, 30*time.Second))
	if res["sandbox_id"] != box || !strings.Contains(fmt.Sprint(res["stdout"]), "before") {
		t.Errorf("run_command after the restart: %v, want sandbox %s printing \"before\"", res, box)
	}
	second.call(t, 3, "process_output", map[string]any{"process_id": proc, "wait_seconds": 10})
	out := structured(t, second.wait(t, 3, 30*time.Second))
	data := fmt.Sprint(out["data"])
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(data, "after-restart") && time.Now().Before(deadline); {
		second.call(t, 4, "process_output", map[string]any{"process_id": proc, "byte_offset": 0, "wait_seconds": 5})
		data = fmt.Sprint(structured(t, second.wait(t, 4, 30*time.Second))["data"])
	}
	if !strings.Contains(data, "started") || !strings.Contains(data, "after-restart") {
		t.Errorf("the kept process's output after the restart: %q, want what it printed before and after", data)
	}
	second.call(t, 5, "process_kill", map[string]any{"process_id": proc, "signal": "KILL"})
	second.wait(t, 5, 30*time.Second)
	second.call(t, 6, "sandbox_destroy", map[string]any{"sandbox_id": box})
	structured(t, second.wait(t, 6, 30*time.Second))
}

// Without --keep-sandboxes, the end of a named session's server ends the
// session: its sandbox goes, and the next server under the name starts
// afresh.
func TestStdioSessionNameWithoutKeepStartsAfresh(t *testing.T) {
	state := t.TempDir()
	first := startStdioPeer(t, state, "MCP_SANDBOX_SESSION_NAME=work")
	first.call(t, 1, "run_command", map[string]any{"command": "true"})
	box := structured(t, first.wait(t, 1, 30*time.Second))["sandbox_id"].(string)
	first.stdin.Close()
	<-first.exited
	if dirs := sandboxDirs(t, state); len(dirs) != 0 {
		t.Errorf("sandboxes left after the session ended: %v", dirs)
	}
	second := startStdioPeer(t, state, "MCP_SANDBOX_SESSION_NAME=work")
	second.call(t, 1, "sandbox_list", nil)
	list := structured(t, second.wait(t, 1, 30*time.Second))
	if boxes, _ := list["sandboxes"].([]any); len(boxes) != 0 || list["current_sandbox_id"] != nil {
		t.Errorf("sandbox_list of the next session under the name (the first had %s): %v", box, list)
	}
	second.call(t, 2, "run_command", map[string]any{"command": "echo fresh"})
	if res := structured(t, second.wait(t, 2, 30*time.Second)); !strings.Contains(fmt.Sprint(res["stdout"]), "fresh") {
		t.Errorf("run_command in the next session: %v", res)
	}
}

// runBinary runs the server over stdio with no input and returns what it
// printed.
func runBinary(t *testing.T, state string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append([]string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSessionNameSetting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		want  string
		error string
	}{
		{"none", nil, "", ""},
		{"a name", []string{"--session-name", "my-agent_1.x"}, "my-agent_1.x", ""},
		{"a path", []string{"--session-name", "../etc"}, "", `invalid value "../etc" for --session-name (MCP_SANDBOX_SESSION_NAME): "../etc" is not a session name: use 1 to 64 letters`},
		{"hidden", []string{"--session-name", ".x"}, "", "not starting with '.'"},
		{"over HTTP", []string{"--http", ":0", "--session-name", "x"}, "", "names the one session of a stdio server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(append([]string{"--env-file", os.DevNull}, tc.args...), func(string) (string, bool) { return "", false }, io.Discard)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("got %v, want an error containing %q", err, tc.error)
				}
				return
			}
			if err != nil || cfg.SessionName != tc.want {
				t.Fatalf("got %q, %v; want %q", cfg.SessionName, err, tc.want)
			}
		})
	}
}
