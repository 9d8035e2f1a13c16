package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
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
	// Every container of this server, and those of them that are
	// sandboxes (not kept warm by the pool for the next create).
	containers := func() []string {
		out, _ := exec.Command("docker", "ps", "-a", "--format", "{{.Names}}", "--filter", "label=mcp-sandbox.server="+server).Output()
		return strings.Fields(string(out))
	}
	sandboxes := func() []string {
		var names []string
		for _, n := range containers() {
			if !strings.HasPrefix(n, "mcp-sandbox-pool-") && !strings.HasPrefix(n, "mcp-sandbox-warming-") {
				names = append(names, n)
			}
		}
		return names
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
	// The sandbox says how much it may write.
	list, isErr, text := callTool(t, c, "sandbox_list", map[string]any{})
	if sbs, _ := list["sandboxes"].([]any); isErr || len(sbs) != 1 || !strings.Contains(fmtAny(sbs[0].(map[string]any)["disk_limit"]), "1GiB") {
		t.Fatalf("sandbox_list: want the disk limit stated: %s", text)
	}
	timed, _, _ := callTool(t, c, "run_command", map[string]any{"command": "sleep 100", "timeout_seconds": 1})
	if timed["timed_out"] != true {
		t.Fatalf("timeout: %v", timed)
	}
	if n := len(sandboxes()); n != 1 {
		t.Fatalf("want 1 sandbox for this server, got %d", n)
	}
	c.Close()
	// The sandbox goes with its session, the warm pool with its server.
	waitFor(t, "the containers removed after the session ended", func() bool { return len(containers()) == 0 })
}

// On docker, run_command stops waiting at wait_seconds and hands back a
// process that finishes in the container; process_output then reports its
// exit status and the rest of its output.
func TestRunCommandOutlivesWaitOnDocker(t *testing.T) {
	img := dockerImage(t)
	server := "test-mcp-" + time.Now().Format("150405.000000")
	env := []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "MCP_SANDBOX_PROVIDER=docker",
		"MCP_SANDBOX_DOCKER_IMAGE=" + img, "MCP_SANDBOX_SERVER_ID=" + server}
	c, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		waitFor(t, "the container removed after the session ended", func() bool {
			out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=mcp-sandbox.server="+server).Output()
			return len(strings.Fields(string(out))) == 0
		})
	})
	initialize(t, c)
	// The container first, so that the time below is the call's alone.
	if _, isErr, text := callTool(t, c, "sandbox_create", nil); isErr {
		t.Fatalf("sandbox_create: %s", text)
	}

	start := time.Now()
	run, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo started; sleep 6; echo done; exit 3", "wait_seconds": 1})
	if isErr || run["running"] != true || run["process_id"] == nil || run["stdout"] != "started\n" {
		t.Fatalf("run_command: %s", text)
	}
	// Well before the command's 6 s: the call returned at its wait (the
	// first command in a container may still go through an engine exec).
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("run_command took %v with wait_seconds 1", took)
	}
	proc := run["process_id"].(string)
	var out map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; {
		out, isErr, text = callTool(t, c, "process_output", map[string]any{"process_id": proc, "byte_offset": run["stdout_bytes"], "wait_seconds": 10})
		if isErr {
			t.Fatalf("process_output: %s", text)
		}
		if p := out["process"].(map[string]any); p["running"] == false || time.Now().After(deadline) {
			break
		}
	}
	p := out["process"].(map[string]any)
	if p["running"] != false || p["exit_code"] != float64(3) || out["data"] != "done\n" {
		t.Fatalf("process_output after the exit: %s", text)
	}
	list, isErr, text := callTool(t, c, "process_list", map[string]any{})
	if ps, _ := list["processes"].([]any); isErr || len(ps) != 1 {
		t.Fatalf("process_list: %s", text)
	}
}

func fmtAny(v any) string {
	s, _ := v.(string)
	return s
}
