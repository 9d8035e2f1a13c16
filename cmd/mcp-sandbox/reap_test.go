package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
)

// A server killed outright (SIGKILL: no session end, no cleanup) leaves its
// sandboxes behind; the next server to start on the machine reclaims them
// at once, and leaves those of another server that still runs alone, though
// all share one server ID (as every stdio server on a host does).
func TestRestartReclaimsAKilledServersSandboxes(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup returns the servers' environment and whether a sandbox
		// still exists on the backend.
		setup func(t *testing.T, state string) ([]string, func(id string) bool)
	}{
		{"local", func(t *testing.T, state string) ([]string, func(string) bool) {
			return nil, func(id string) bool {
				_, err := os.Stat(filepath.Join(state, "local", id))
				return err == nil
			}
		}},
		{"docker", func(t *testing.T, _ string) ([]string, func(string) bool) {
			img := dockerImage(t)
			p, err := docker.New(context.Background(), providers.Config{Getenv: func(string) string { return "" }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return []string{"MCP_SANDBOX_PROVIDER=docker", "MCP_SANDBOX_DOCKER_IMAGE=" + img, "PATH=" + os.Getenv("PATH"),
					"MCP_SANDBOX_SERVER_ID=test-reap-" + time.Now().Format("150405.000000")},
				func(id string) bool {
					_, err := p.Get(context.Background(), id)
					return err == nil
				}
		}},
		{"e2b", func(t *testing.T, _ string) ([]string, func(string) bool) {
			fake, err := e2bfake.New(e2bfake.Options{APIKey: "test-key"})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(fake)
			t.Cleanup(func() { ts.Close(); fake.Close() })
			return []string{"MCP_SANDBOX_PROVIDER=e2b", "E2B_API_KEY=test-key", "E2B_API_URL=" + ts.URL, "E2B_SANDBOX_URL=" + ts.URL},
				func(id string) bool {
					return slices.ContainsFunc(fake.Sandboxes(), func(s e2bfake.SandboxInfo) bool { return s.ID == id })
				}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One machine: the servers share a state dir, where they hold
			// their liveness locks (and local keeps its sandboxes).
			state := t.TempDir()
			env, exists := tc.setup(t, state)
			env = append(env, "HOME="+t.TempDir(), "MCP_SANDBOX_STATE_DIR="+state)
			killed, killedServer := startStdio(t, env)
			dead := createSandbox(t, killed)
			live, _ := startStdio(t, env)
			kept := createSandbox(t, live)
			killedServer.Process.Kill()
			killedServer.Wait()
			if !exists(dead) {
				t.Fatal("the killed server's sandbox is gone before any restart; the test proves nothing")
			}

			startStdio(t, env) // the restart
			waitForLong(t, "the killed server's sandbox reclaimed", func() bool { return !exists(dead) })
			if !exists(kept) {
				t.Error("the live server's sandbox was reclaimed")
			}
			// The live server still serves it.
			if _, isErr, text := callTool(t, live, "run_command", map[string]any{"command": "echo still here", "sandbox_id": kept}); isErr {
				t.Errorf("the live server's sandbox after the restart: %s", text)
			}
		})
	}
}

// startStdio starts the server binary over stdio and initializes a client.
func startStdio(t *testing.T, env []string) (*client.Client, *exec.Cmd) {
	t.Helper()
	var server *exec.Cmd
	c, err := client.NewStdioMCPClientWithOptions(binary, env, nil,
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
	return c, server
}

func createSandbox(t *testing.T, c *client.Client) string {
	t.Helper()
	res, isErr, text := callTool(t, c, "sandbox_create", map[string]any{})
	id, _ := res["sandbox_id"].(string)
	if isErr || id == "" {
		t.Fatalf("sandbox_create: %s", text)
	}
	return id
}

// waitForLong is waitFor for what goes through a backend (a container to
// remove).
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
