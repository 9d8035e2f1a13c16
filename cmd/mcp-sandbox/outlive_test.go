package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
)

// Processes outlive a server that dies (SIGKILL, no cleanup): a fresh
// driver on the same state dir, standing for the restarted server, reads
// their whole output and exit status: a process_start process, and a
// run_command detached at its wait (its supervisor took it over).
func TestProcessesOutliveAKilledServer(t *testing.T) {
	state := t.TempDir()
	var server *exec.Cmd
	c, err := client.NewStdioMCPClientWithOptions(binary, []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir()}, nil,
		transport.WithCommandFunc(func(ctx context.Context, command string, env, args []string) (*exec.Cmd, error) {
			server = exec.Command(command, args...)
			server.Env = env
			return server, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c)
	started, isErr, text := callTool(t, c, "process_start", map[string]any{"command": "echo one; sleep 1; echo two; exit 3"})
	if isErr {
		t.Fatal(text)
	}
	detached, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo uno; sleep 1; echo dos; exit 4", "wait_seconds": 0.3})
	if isErr || detached["running"] != true {
		t.Fatalf("run_command did not detach: %s", text)
	}
	// Kill the server outright: no session end, no cleanup.
	server.Process.Kill()
	server.Wait()

	p, err := local.New(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyLeftSandboxes(state) }) // the dead server could not
	for _, tc := range []struct {
		handle, output string
		exit           int
	}{
		{started["process_id"].(string), "one\ntwo\n", 3},
		{detached["process_id"].(string), "uno\ndos\n", 4},
	} {
		id, proc, _ := strings.Cut(tc.handle, ":")
		in, err := p.WaitProcess(context.Background(), id, proc, 10*time.Second)
		if err != nil || in.Running || in.ExitCode != tc.exit {
			t.Errorf("%s after the server died: %+v %v (want exit %d)", tc.handle, in, err, tc.exit)
			continue
		}
		out, err := p.ReadOutput(context.Background(), id, proc, providers.OutputRequest{Stream: providers.Stdout, Limit: 100})
		if err != nil || string(out.Data) != tc.output {
			t.Errorf("%s output: %q %v, want %q", tc.handle, out.Data, err, tc.output)
		}
	}
}

// destroyLeftSandboxes destroys the local sandboxes a test leaves in a state
// directory by design (a killed server, sessions a shared store keeps past
// their replicas): each is a live PID 1 and, on a root server, a mounted
// file system that would keep the directory from being removed. Register
// it after the state directory and before what stops the servers.
func destroyLeftSandboxes(state string) {
	p, err := local.New(state)
	if err != nil {
		return
	}
	sbs, _ := p.List(context.Background(), nil)
	for _, sb := range sbs {
		p.Destroy(context.Background(), sb.ID)
	}
}
