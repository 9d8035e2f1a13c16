package main

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
)

// On e2b, a command that outlives wait_seconds comes back with a handle,
// as on local and docker, and the handle later gives its output and exit.
func TestRunCommandPastWaitOnE2BFake(t *testing.T) {
	fake, err := e2bfake.New(e2bfake.Options{APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fake)
	t.Cleanup(func() { ts.Close(); fake.Close() })
	env := []string{"HOME=" + t.TempDir(), "MCP_SANDBOX_PROVIDER=e2b", "E2B_API_KEY=test-key",
		"E2B_API_URL=" + ts.URL, "E2B_SANDBOX_URL=" + ts.URL}
	c, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c)

	if _, isErr, text := callTool(t, c, "sandbox_create", map[string]any{"name": "handles"}); isErr {
		t.Fatalf("sandbox_create: %s", text)
	}
	// Still running when the call returns: it did not wait for the command.
	run, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "sleep 3; echo done", "wait_seconds": 1})
	if isErr || run["running"] != true || run["process_id"] == nil {
		t.Fatalf("run_command: %s", text)
	}
	proc := run["process_id"].(string)
	var out map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, isErr, text = callTool(t, c, "process_output", map[string]any{"process_id": proc, "wait_seconds": 10})
		if isErr {
			t.Fatalf("process_output: %s", text)
		}
		if p := out["process"].(map[string]any); p["running"] == false || time.Now().After(deadline) {
			break
		}
	}
	p := out["process"].(map[string]any)
	if p["running"] != false || p["exit_code"] != float64(0) || out["data"] != "done\n" {
		t.Fatalf("process_output after the exit: %s", text)
	}
}
