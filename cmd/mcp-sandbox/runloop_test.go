package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop"
	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
)

// runloopFake serves a fake of Runloop on loopback (HTTP/1.1 and h2c).
func runloopFake(t *testing.T) (*runloopfake.Server, string) {
	t.Helper()
	fake, err := runloopfake.New(runloopfake.Options{APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := fake.HTTPServer()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); fake.Close() })
	return fake, "http://" + ln.Addr().String()
}

// The server on the runloop provider, pointed at the fake through
// RUNLOOP_BASE_URL, serves a whole MCP flow, a command that outlives
// wait_seconds included; ending the session shuts the devbox down.
func TestStdioFlowOnRunloopFake(t *testing.T) {
	fake, url := runloopFake(t)
	env := []string{"HOME=" + t.TempDir(), "MCP_SANDBOX_PROVIDER=runloop", "RUNLOOP_API_KEY=test-key", "RUNLOOP_BASE_URL=" + url}
	c, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)

	created, isErr, text := callTool(t, c, "sandbox_create", map[string]any{"name": "flow"})
	if isErr || created["provider"] != "runloop" {
		t.Fatalf("sandbox_create: %s", text)
	}
	if _, isErr, text := callTool(t, c, "write_file", map[string]any{"path": "hello.txt", "content": "from runloop\n"}); isErr {
		t.Fatalf("write_file: %s", text)
	}
	read, isErr, text := callTool(t, c, "read_file", map[string]any{"path": "hello.txt"})
	if isErr || read["content"] != "from runloop\n" {
		t.Fatalf("read_file: %s", text)
	}
	run, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "cat hello.txt; echo $RUNLOOP_API_KEY; exit 4"})
	if isErr || run["stdout"] != "from runloop\n\n" || run["exit_code"] != 4.0 {
		t.Fatalf("run_command: %s", text)
	}
	long, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo begin; sleep 2; echo end >&2", "wait_seconds": 0.5})
	if isErr || !strings.Contains(text, "begin") {
		t.Fatalf("run_command past wait_seconds: %s", text)
	}
	if long["running"] == true {
		t.Logf("detached: %s", text)
	} else if long["stdout"] != "begin\n" || long["stderr"] != "end\n" || long["exit_code"] != 0.0 {
		t.Fatalf("run_command past wait_seconds: %s", text)
	}
	list, isErr, text := callTool(t, c, "list_files", map[string]any{"path": "."})
	if isErr || !strings.Contains(text, "hello.txt") {
		t.Fatalf("list_files: %s (%v)", text, list)
	}
	if n := len(fake.Devboxes()); n != 1 {
		t.Fatalf("want 1 devbox on the fake, got %d", n)
	}
	c.Close()
	waitFor(t, "the session's devbox shut down on the fake", func() bool { return len(fake.Devboxes()) == 0 })
}

func TestRunloopWithoutKeyExitsWithItsMessage(t *testing.T) {
	out, err := execBinary(t, []string{"MCP_SANDBOX_PROVIDER=runloop"})
	if err == nil || !strings.Contains(out, "RUNLOOP_API_KEY environment variable is not set. Please set it to your Runloop API key.") {
		t.Fatalf("want the missing-key message, got %v:\n%s", err, out)
	}
}

// A server that dies (SIGKILL, no cleanup) leaves its devbox running. A
// fresh driver with the same server ID serves the devbox by ID, and a new
// server with that ID reaps it at start-up once it expired, since no
// session of the new server claims it.
func TestRunloopServerKilledThenReaped(t *testing.T) {
	fake, url := runloopFake(t)
	env := []string{"HOME=" + t.TempDir(), "MCP_SANDBOX_PROVIDER=runloop", "RUNLOOP_API_KEY=test-key", "RUNLOOP_BASE_URL=" + url,
		"MCP_SANDBOX_SERVER_ID=ha-test", "MCP_SANDBOX_RUNLOOP_EXPIRY=1s"}
	var serverA *exec.Cmd
	a, err := client.NewStdioMCPClientWithOptions(binary, env, nil,
		transport.WithCommandFunc(func(ctx context.Context, command string, env, args []string) (*exec.Cmd, error) {
			serverA = exec.Command(command, args...)
			serverA.Env = env
			return serverA, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	initialize(t, a)
	created, isErr, text := callTool(t, a, "sandbox_create", map[string]any{"name": "orphan"})
	if isErr {
		t.Fatal(text)
	}
	id := created["sandbox_id"].(string)
	if _, isErr, text := callTool(t, a, "write_file", map[string]any{"path": "note.txt", "content": "left behind"}); isErr {
		t.Fatal(text)
	}
	serverA.Process.Kill()
	serverA.Wait()
	if n := len(fake.Devboxes()); n != 1 {
		t.Fatalf("after the kill the fake runs %d devboxes, want the orphan", n)
	}

	p, err := runloop.New(runloop.Options{APIKey: "test-key", BaseURL: url, ServerID: "ha-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if sb, err := p.Get(context.Background(), id); err != nil || sb.Name != "orphan" {
		t.Fatalf("a fresh driver cannot Get %s: %+v %v", id, sb, err)
	}
	var out bytes.Buffer
	if _, err := p.Exec(context.Background(), id, providers.ExecRequest{Command: "cat note.txt", Stdout: &out}); err != nil || out.String() != "left behind" {
		t.Fatalf("a fresh driver reads %q, %v", out.String(), err)
	}

	time.Sleep(time.Second) // past the orphan's expiry
	b, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	initialize(t, b)
	waitFor(t, "server B reaping the orphan", func() bool { return len(fake.Devboxes()) == 0 })
}
