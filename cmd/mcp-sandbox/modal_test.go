package main

import (
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/modal/modalfake"
)

// startModalFake runs Modal's fake for the test and returns the settings
// that point a server at it.
func startModalFake(t *testing.T) (*modalfake.Server, []string) {
	t.Helper()
	fake, err := modalfake.New(modalfake.Options{TokenID: "ak-test", TokenSecret: "as-test"})
	if err != nil {
		t.Fatal(err)
	}
	url, err := fake.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake, []string{"MODAL_SERVER_URL=" + url, "MODAL_TOKEN_ID=ak-test", "MODAL_TOKEN_SECRET=as-test", "MCP_SANDBOX_MODAL_IMAGE=alpine:3.21"}
}

// The server on the modal provider, pointed at a local fake of Modal with
// MODAL_SERVER_URL, serves a whole MCP flow; ending the session terminates
// the sandbox on the fake.
func TestStdioFlowOnModalFake(t *testing.T) {
	fake, modalEnv := startModalFake(t)
	env := append([]string{"HOME=" + t.TempDir(), "MCP_SANDBOX_PROVIDER=modal"}, modalEnv...)
	c, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)

	created, isErr, text := callTool(t, c, "sandbox_create", map[string]any{"name": "flow"})
	if isErr || created["provider"] != "modal" {
		t.Fatalf("sandbox_create: %s", text)
	}
	if _, isErr, text := callTool(t, c, "write_file", map[string]any{"path": "hello.txt", "content": "from modal\n"}); isErr {
		t.Fatalf("write_file: %s", text)
	}
	read, isErr, text := callTool(t, c, "read_file", map[string]any{"path": "hello.txt"})
	if isErr || read["content"] != "from modal\n" {
		t.Fatalf("read_file: %s", text)
	}
	if _, isErr, text := callTool(t, c, "edit_file", map[string]any{"path": "hello.txt", "old_string": "from", "new_string": "edited on"}); isErr {
		t.Fatalf("edit_file: %s", text)
	}
	run, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "cat hello.txt; echo $MODAL_TOKEN_SECRET; echo err >&2; exit 4"})
	if isErr || run["stdout"] != "edited on modal\n\n" || run["stderr"] != "err\n" || run["exit_code"] != 4.0 {
		t.Fatalf("run_command: %s", text)
	}
	_, isErr, text = callTool(t, c, "list_files", map[string]any{"path": "."})
	if isErr || !strings.Contains(text, "hello.txt") {
		t.Fatalf("list_files: %s", text)
	}
	timed, _, text := callTool(t, c, "run_command", map[string]any{"command": "sleep 100", "timeout_seconds": 1})
	if timed["timed_out"] != true {
		t.Fatalf("timeout: %s", text)
	}
	if n := len(fake.Sandboxes()); n != 1 {
		t.Fatalf("want 1 sandbox on the fake, got %d", n)
	}
	c.Close()
	waitFor(t, "the session's sandbox terminated on the fake", func() bool { return len(fake.Sandboxes()) == 0 })
}

func TestModalWithoutTokensExitsWithModalsMessage(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET environment variables are not set. Please set them to your Modal token ID and secret."},
		{[]string{"MODAL_TOKEN_ID=x"}, "MODAL_TOKEN_SECRET environment variable is not set. Please set it to your Modal token secret."},
	} {
		out, err := execBinary(t, append([]string{"MCP_SANDBOX_PROVIDER=modal"}, tc.env...))
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("want %q, got %v:\n%s", tc.want, err, out)
		}
	}
}

// TestModalSandboxOutlivesAKilledServer is the HA test: server process A
// creates a sandbox for a session and is killed with SIGKILL; a driver with
// server B's settings (same server ID, same fake) serves that sandbox by ID
// with nothing but the ID; server B's reaper leaves it while it is fresh
// and terminates it once it has expired and no session claims it.
func TestModalSandboxOutlivesAKilledServer(t *testing.T) {
	fake, modalEnv := startModalFake(t)
	const expiry = 10 * time.Second
	env := append([]string{"MCP_SANDBOX_PROVIDER=modal", "MCP_SANDBOX_SERVER_ID=ha-server", "MCP_SANDBOX_MODAL_EXPIRY=" + expiry.String()}, modalEnv...)

	var serverA *exec.Cmd
	a, err := client.NewStdioMCPClientWithOptions(binary, append([]string{"HOME=" + t.TempDir()}, env...), nil,
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
	created, isErr, text := callTool(t, a, "sandbox_create", map[string]any{"name": "ha"})
	if isErr {
		t.Fatalf("sandbox_create: %s", text)
	}
	id := created["sandbox_id"].(string)
	if _, isErr, text := callTool(t, a, "write_file", map[string]any{"path": "state.txt", "content": "kept\n"}); isErr {
		t.Fatalf("write_file: %s", text)
	}
	createdAt := time.Now()
	serverA.Process.Kill() // no session end, no cleanup
	serverA.Wait()

	// B's driver: the same settings, nothing else, serves the sandbox by ID.
	get := func(k string) string {
		for _, kv := range env {
			if key, v, _ := strings.Cut(kv, "="); key == k {
				return v
			}
		}
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := providers.Open(ctx, "modal", providers.Config{Getenv: get, ServerID: "ha-server"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var out strings.Builder
	if res, err := b.Exec(ctx, id, providers.ExecRequest{Command: "cat state.txt; echo ran", Stdout: &out}); err != nil || res.ExitCode != 0 || out.String() != "kept\nran\n" {
		t.Fatalf("Exec by ID after A died: %+v %v %q", res, err, out.String())
	}
	rc, _, err := b.ReadFile(ctx, id, "state.txt")
	if err != nil {
		t.Fatalf("ReadFile by ID after A died: %v", err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if string(data) != "kept\n" {
		t.Fatalf("ReadFile by ID: %q", data)
	}

	// Server B starts while the sandbox is fresh: its start-up reap keeps it.
	startB := func() *client.Client {
		c, err := client.NewStdioMCPClient(binary, append([]string{"HOME=" + t.TempDir()}, env...))
		if err != nil {
			t.Fatal(err)
		}
		initialize(t, c)
		return c
	}
	b1 := startB()
	time.Sleep(500 * time.Millisecond)
	if n := len(fake.Sandboxes()); n != 1 {
		t.Fatalf("server B reaped a sandbox before its expiry (%d left)", n)
	}
	b1.Close()

	// Past the expiry, with A's session gone, B's reaper terminates it.
	time.Sleep(time.Until(createdAt.Add(expiry + 500*time.Millisecond)))
	b2 := startB()
	t.Cleanup(func() { b2.Close() })
	waitFor(t, "server B's reaper to terminate the orphan", func() bool { return len(fake.Sandboxes()) == 0 })
	if _, err := b.Get(ctx, id); err == nil {
		t.Errorf("Get after the reap: the sandbox is still there")
	}
}

// A server that finds, on the same machine, the sandbox of a server with
// its ID that was killed (its instance lock is free) terminates it at
// start-up, long before its expiry.
func TestModalOrphanOfAKilledServerHereGoesAtOnce(t *testing.T) {
	fake, modalEnv := startModalFake(t)
	home := t.TempDir() // the same state dir for both servers
	env := append([]string{"HOME=" + home, "MCP_SANDBOX_PROVIDER=modal", "MCP_SANDBOX_SERVER_ID=ha-server", "MCP_SANDBOX_MODAL_EXPIRY=1h"}, modalEnv...)
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
	if _, isErr, text := callTool(t, a, "sandbox_create", map[string]any{"name": "orphan"}); isErr {
		t.Fatalf("sandbox_create: %s", text)
	}
	serverA.Process.Kill()
	serverA.Wait()
	if n := len(fake.Sandboxes()); n != 1 {
		t.Fatalf("%d sandboxes after A died, want its 1", n)
	}
	b, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	initialize(t, b)
	waitFor(t, "server B's reaper to terminate the dead server's sandbox", func() bool { return len(fake.Sandboxes()) == 0 })
}
