package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"
)

// A server that enables local and docker keeps them apart: nothing a local
// sandbox can read (its environment, every process it can see, the file
// system from its root; its own records are out of its reach) names any
// session, its own included, or the docker sandbox, and knowing a docker
// sandbox's ID does not let another session act on it. The docker sandbox,
// for its part, sees nothing of the local one.
func TestProvidersStayApart(t *testing.T) {
	img := dockerImage(t)
	server := "test-apart-" + time.Now().Format("150405.000000")
	// No warm pool: the containers counted below are sandboxes.
	ts, state := newHTTP(t, "--providers", "docker", "--docker-image", img, "--server-id", server, "--docker-warm-pool", "0")
	alice, bob := httpClient(t, ts.URL), httpClient(t, ts.URL)
	sessionOf := func(c *client.Client) string { return c.GetTransport().(*transport.StreamableHTTP).GetSessionId() }

	created, isErr, text := callTool(t, alice, "sandbox_create", map[string]any{"provider": "docker"})
	if isErr {
		t.Fatal(text)
	}
	dockerID := created["sandbox_id"].(string)
	if _, isErr, text := callTool(t, alice, "write_file", map[string]any{"path": "secret.txt", "content": "alice-docker-secret"}); isErr {
		t.Fatal(text)
	}
	out, _ := exec.Command("docker", "ps", "-q", "--no-trunc", "--filter", "label=mcp-sandbox.server="+server).Output()
	containers := strings.Fields(string(out))
	if len(containers) != 1 {
		t.Fatalf("containers of this server: %v, want alice's one", containers)
	}

	// What bob's local sandbox can read: its environment, every process's,
	// the file system from / down; its records are out of its reach.
	seen, isErr, text := callTool(t, bob, "run_command", map[string]any{"command": "env; cat /proc/*/environ; ls -aR / 2>/dev/null | head -c 2000000; cat ../meta.json ../../*/meta.json"})
	if isErr {
		t.Fatal(text)
	}
	local := seen["stdout"].(string)
	if !strings.Contains(local, "workspace") {
		t.Fatalf("the local sandbox's listing is not what was read:\n%.2000s", local)
	}
	for what, secret := range map[string]string{
		"its own session": sessionOf(bob), "alice's session": sessionOf(alice), "alice's docker sandbox": dockerID, "alice's container": containers[0],
		"the docker engine": "DOCKER_", "alice's file": "alice-docker-secret",
	} {
		if strings.Contains(local, secret) {
			t.Errorf("bob's local sandbox can read %s (%q):\n%s", what, secret, local)
		}
	}

	// Knowing the ID is not enough: every tool refuses it in bob's session.
	for _, call := range []struct {
		tool string
		args map[string]any
	}{
		{"run_command", map[string]any{"command": "cat secret.txt", "sandbox_id": dockerID}},
		{"read_file", map[string]any{"path": "secret.txt", "sandbox_id": dockerID}},
		{"write_file", map[string]any{"path": "secret.txt", "content": "bob", "sandbox_id": dockerID}},
		{"list_files", map[string]any{"sandbox_id": dockerID}},
		{"sandbox_destroy", map[string]any{"sandbox_id": dockerID}},
	} {
		res, isErr, text := callTool(t, bob, call.tool, call.args)
		if !isErr || strings.Contains(text, "alice-docker-secret") {
			t.Errorf("bob's %s on alice's docker sandbox: isError=%v %v %q", call.tool, isErr, res, text)
		}
	}
	read, isErr, text := callTool(t, alice, "read_file", map[string]any{"path": "secret.txt"})
	if isErr || read["content"] != "alice-docker-secret" {
		t.Fatalf("alice's docker sandbox after bob's attempts: %s", text)
	}

	// And the container sees nothing of bob or of the host's state.
	inside, isErr, text := callTool(t, alice, "run_command", map[string]any{"command": "env; cat /proc/1/environ 2>/dev/null; ls / /workspace"})
	if isErr {
		t.Fatal(text)
	}
	for what, secret := range map[string]string{"bob's session": sessionOf(bob), "the state dir": state, "the server's session label": "@"} {
		if strings.Contains(inside["stdout"].(string), secret) {
			t.Errorf("alice's container can read %s (%q):\n%s", what, secret, inside["stdout"])
		}
	}
}
