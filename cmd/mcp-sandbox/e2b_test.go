package main

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
)

// The server on the e2b provider, pointed at a local fake of E2B the way a
// self-hosted E2B is reached, serves a whole MCP flow; ending the session
// kills the sandbox on the fake.
func TestStdioFlowOnE2BFake(t *testing.T) {
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
	initialize(t, c)

	created, isErr, text := callTool(t, c, "sandbox_create", map[string]any{"name": "flow"})
	if isErr || created["provider"] != "e2b" {
		t.Fatalf("sandbox_create: %s", text)
	}
	if _, isErr, text := callTool(t, c, "write_file", map[string]any{"path": "hello.txt", "content": "from e2b\n"}); isErr {
		t.Fatalf("write_file: %s", text)
	}
	read, isErr, text := callTool(t, c, "read_file", map[string]any{"path": "hello.txt"})
	if isErr || read["content"] != "from e2b\n" {
		t.Fatalf("read_file: %s", text)
	}
	run, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "cat hello.txt; echo $E2B_API_KEY; exit 4"})
	if isErr || run["stdout"] != "from e2b\n\n" || run["exit_code"] != 4.0 {
		t.Fatalf("run_command: %s", text)
	}
	if n := len(fake.Sandboxes()); n != 1 {
		t.Fatalf("want 1 sandbox on the fake, got %d", n)
	}
	c.Close()
	waitFor(t, "the session's sandbox killed on the fake", func() bool { return len(fake.Sandboxes()) == 0 })
}

func TestE2BWithoutKeyExitsWithE2BsMessage(t *testing.T) {
	out, err := execBinary(t, []string{"MCP_SANDBOX_PROVIDER=e2b"})
	if err == nil || !strings.Contains(out, "E2B_API_KEY environment variable is not set. Please set it to your E2B API key.") {
		t.Fatalf("want E2B's missing-key message, got %v:\n%s", err, out)
	}
}
