package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// The server's instructions say what confines each provider's sandboxes;
// isolation none is said to be no sandbox at all, and is only had by asking.
func TestInstructionsSayWhatConfinesTheSandboxes(t *testing.T) {
	for _, tc := range []struct {
		name, isolation, want string
	}{
		{"default", "", "- local: isolation namespaces, network loopback only, limits processes 512, memory 2GiB"},
		{"none asked", "none", "- local: isolation none, network loopback only, limits processes 512, memory 2GiB (NOT a sandbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"MCP_SANDBOX_STATE_DIR=" + t.TempDir(), "HOME=" + t.TempDir(), "MCP_SANDBOX_LOCAL_ISOLATION=" + tc.isolation}
			c, err := client.NewStdioMCPClient(binary, env)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := mcp.InitializeRequest{}
			req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
			req.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
			res, err := c.Initialize(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(res.Instructions, tc.want) {
				t.Errorf("instructions do not say %q:\n%s", tc.want, res.Instructions)
			}
		})
	}
}

// The start-up log says which isolation local sandboxes get; a bad
// --local-isolation is one line naming the setting and the choices.
func TestStartupSaysTheLocalIsolation(t *testing.T) {
	run := func(env ...string) (string, error) {
		cmd := exec.Command(binary)
		cmd.Env = append([]string{"MCP_SANDBOX_STATE_DIR=" + t.TempDir(), "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
		cmd.Stdin = strings.NewReader("") // end of input: the server stops
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run()
	if err != nil || !strings.Contains(out, "local sandboxes") || !strings.Contains(out, "isolation=namespaces") || !strings.Contains(out, `network="loopback only"`) {
		t.Errorf("start-up log (%v):\n%s", err, out)
	}
	out, err = run("MCP_SANDBOX_LOCAL_ISOLATION=none")
	if err != nil || !strings.Contains(out, "local sandboxes are not isolated") {
		t.Errorf("with isolation none, no warning (%v):\n%s", err, out)
	}
	out, err = run("MCP_SANDBOX_LOCAL_ISOLATION=strong")
	if err == nil || !strings.Contains(out, "MCP_SANDBOX_LOCAL_ISOLATION") || !strings.Contains(out, "namespaces, landlock or none") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("a bad isolation level (%v):\n%s", err, out)
	}
}
