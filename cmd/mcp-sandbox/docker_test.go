package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
)

// dockerImage is the image the docker tests run (built FROM scratch with
// busybox by .ci/setup-docker.sh, since no registry is reachable in CI).
func dockerImage(t *testing.T) string {
	t.Helper()
	img := os.Getenv("MCP_SANDBOX_DOCKER_TEST_IMAGE")
	if img == "" {
		img = "mcp-sandbox-test:busybox"
	}
	if err := exec.Command("docker", "image", "inspect", img).Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no Docker engine with image %s (run .ci/setup-docker.sh): %v", img, err)
		}
		t.Skipf("no Docker engine with image %s (run .ci/setup-docker.sh)", img)
	}
	return img
}

// The server on the docker provider: the whole flow in a hardened
// container, with no network, and the container gone when the session ends.
func TestStdioFlowOnDocker(t *testing.T) {
	img := dockerImage(t)
	server := "test-mcp-" + time.Now().Format("150405.000000")
	env := []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "MCP_SANDBOX_PROVIDER=docker",
		"MCP_SANDBOX_DOCKER_IMAGE=" + img, "MCP_SANDBOX_SERVER_ID=" + server, "OPENAI_API_KEY=server-secret"}
	c, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)
	containers := func() []string {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=mcp-sandbox.server="+server).Output()
		return strings.Fields(string(out))
	}

	if _, isErr, text := callTool(t, c, "write_file", map[string]any{"path": "app/hello.sh", "content": "echo hello from $(hostname)\n"}); isErr {
		t.Fatalf("write_file: %s", text)
	}
	run, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "sh app/hello.sh; env; wget -q -T 2 -O- http://127.0.0.1:1 2>&1; ip route 2>/dev/null | head -1"})
	if isErr || !strings.HasPrefix(run["stdout"].(string), "hello from ") {
		t.Fatalf("run_command: %s", text)
	}
	if strings.Contains(run["stdout"].(string), "server-secret") {
		t.Fatal("the server's environment reached the container")
	}
	if strings.Contains(run["stdout"].(string), "default via") {
		t.Fatal("the sandbox has a network route; it must have no network by default")
	}
	read, isErr, text := callTool(t, c, "read_file", map[string]any{"path": "/workspace/app/hello.sh"})
	if isErr || read["content"] != "echo hello from $(hostname)\n" {
		t.Fatalf("read_file: %s", text)
	}
	timed, _, _ := callTool(t, c, "run_command", map[string]any{"command": "sleep 100", "timeout_seconds": 1})
	if timed["timed_out"] != true {
		t.Fatalf("timeout: %v", timed)
	}
	if n := len(containers()); n != 1 {
		t.Fatalf("want 1 container for this server, got %d", n)
	}
	c.Close()
	waitFor(t, "the container removed after the session ended", func() bool { return len(containers()) == 0 })
}
