package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona"
	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona/daytonafake"
)

// startDaytonaFake runs the fake in this process and returns it with the
// environment that points the server at it.
func startDaytonaFake(t *testing.T) (*daytonafake.Server, []string) {
	t.Helper()
	fake, err := daytonafake.New(daytonafake.Options{APIKey: "test-key"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fake)
	t.Cleanup(func() { ts.Close(); fake.Close() })
	return fake, []string{"HOME=" + t.TempDir(), "MCP_SANDBOX_PROVIDER=daytona", "DAYTONA_API_KEY=test-key", "DAYTONA_API_URL=" + ts.URL + "/api"}
}

func sandboxStates(fake *daytonafake.Server) map[string]string {
	states := map[string]string{}
	for _, s := range fake.Sandboxes() {
		states[s.ID] = s.State
	}
	return states
}

// The server on the daytona provider, pointed at the fake through
// DAYTONA_API_URL, serves a whole MCP flow. Ending the session stops the
// sandbox (DAYTONA_DELETE_ON_CLOSE=false, the default) or deletes it.
func TestStdioFlowOnDaytonaFake(t *testing.T) {
	for _, deleteOnClose := range []bool{false, true} {
		t.Run(map[bool]string{false: "session end stops", true: "session end deletes"}[deleteOnClose], func(t *testing.T) {
			fake, env := startDaytonaFake(t)
			if deleteOnClose {
				env = append(env, "DAYTONA_DELETE_ON_CLOSE=true")
			}
			c, err := client.NewStdioMCPClient(binary, env)
			if err != nil {
				t.Fatal(err)
			}
			initialize(t, c)
			created, isErr, text := callTool(t, c, "sandbox_create", map[string]any{"name": "flow", "env": map[string]any{"GREETING": "hi"}})
			if isErr || created["provider"] != "daytona" {
				t.Fatalf("sandbox_create: %s", text)
			}
			id := created["sandbox_id"].(string)
			if _, isErr, text := callTool(t, c, "write_file", map[string]any{"path": "dir/hello.txt", "content": "from daytona\n"}); isErr {
				t.Fatalf("write_file: %s", text)
			}
			if _, isErr, text := callTool(t, c, "edit_file", map[string]any{"path": "dir/hello.txt", "old_string": "daytona", "new_string": "the fake"}); isErr {
				t.Fatalf("edit_file: %s", text)
			}
			read, isErr, text := callTool(t, c, "read_file", map[string]any{"path": "dir/hello.txt"})
			if isErr || read["content"] != "from the fake\n" {
				t.Fatalf("read_file: %s", text)
			}
			_, isErr, text = callTool(t, c, "list_files", map[string]any{"path": "dir"})
			if isErr || !strings.Contains(text, "hello.txt") {
				t.Fatalf("list_files: %s", text)
			}
			run, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "cat dir/hello.txt; echo $GREETING $DAYTONA_API_KEY; echo oops >&2; exit 4"})
			if isErr || run["stdout"] != "from the fake\nhi\n" || run["stderr"] != "oops\n" || run["exit_code"] != 4.0 {
				t.Fatalf("run_command: %s", text)
			}
			if states := sandboxStates(fake); len(states) != 1 || states[id] != "started" {
				t.Fatalf("want the one sandbox started on the fake, got %v", states)
			}
			c.Close()
			if deleteOnClose {
				waitFor(t, "the session's sandbox deleted on the fake", func() bool { return len(fake.Sandboxes()) == 0 })
			} else {
				waitFor(t, "the session's sandbox stopped, not deleted", func() bool { return sandboxStates(fake)[id] == "stopped" })
			}
		})
	}
}

func TestDaytonaWithoutKeyExitsWithItsMessage(t *testing.T) {
	out, err := execBinary(t, []string{"MCP_SANDBOX_PROVIDER=daytona"})
	if err == nil || !strings.Contains(out, daytona.MissingKeyMessage) {
		t.Fatalf("want %q, got %v:\n%s", daytona.MissingKeyMessage, err, out)
	}
	out, err = execBinary(t, []string{"MCP_SANDBOX_PROVIDER=daytona", "DAYTONA_API_KEY=k", "DAYTONA_DELETE_ON_CLOSE=sometimes"})
	if err == nil || !strings.Contains(out, "DAYTONA_DELETE_ON_CLOSE") || !strings.Contains(out, "true or false") {
		t.Fatalf("a bad boolean: %v:\n%s", err, out)
	}
}

// Server A creates a sandbox for its session and is killed (no session
// end, no cleanup). The sandbox is served by ID by a driver that did not
// create it, and server B, with the same server ID, reaps it at start-up
// once it has expired, since no session of B's claims it.
func TestDaytonaSandboxOutlivesAKilledServer(t *testing.T) {
	fake, env := startDaytonaFake(t)
	env = append(env, "MCP_SANDBOX_SERVER_ID=ha-test", "MCP_SANDBOX_DAYTONA_EXPIRY=2s", "DAYTONA_DELETE_ON_CLOSE=true")
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
	created, isErr, text := callTool(t, a, "sandbox_create", map[string]any{})
	if isErr {
		t.Fatal(text)
	}
	id := created["sandbox_id"].(string)
	if _, isErr, text := callTool(t, a, "write_file", map[string]any{"path": "note.txt", "content": "from A"}); isErr {
		t.Fatal(text)
	}
	serverA.Process.Kill()
	serverA.Wait()

	// Nothing but the ID and the API: another driver serves the sandbox.
	var apiURL string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "DAYTONA_API_URL="); ok {
			apiURL = v
		}
	}
	p, err := daytona.New(daytona.Options{APIKey: "test-key", APIURL: apiURL, ServerID: "ha-test"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := p.Exec(context.Background(), id, providers.ExecRequest{Command: "cat note.txt", Stdout: &out})
	if err != nil || res.ExitCode != 0 || out.String() != "from A" {
		t.Fatalf("a fresh driver on the sandbox of the killed server: %+v %q %v", res, out.String(), err)
	}
	if states := sandboxStates(fake); states[id] != "started" {
		t.Fatalf("the killed server's sandbox: %v", states)
	}

	time.Sleep(2 * time.Second) // past the expiry
	b, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	initialize(t, b)
	waitFor(t, "server B reaping the orphaned sandbox", func() bool { return len(fake.Sandboxes()) == 0 })
}
