// Package nodesdk finds what .ci/setup-node.sh installs, Node 22 and each
// vendor SDK pinned in a fake's sdktest directory, for the contract tests
// and benchmarks that drive a vendor's own SDK against its fake.
package nodesdk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DefaultNode is where .ci/setup-node.sh installs Node 22;
// $MCP_SANDBOX_NODE overrides it.
const DefaultNode = "/opt/mcp-sandbox/node22/node_modules/node/bin/node"

// Need skips the test when an external tool is missing, except under CI
// (CI=true), where a skip would let the contract go unchecked.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := what + " is not available (" + err.Error() + "); run .ci/setup-node.sh"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Node returns Node 22: $MCP_SANDBOX_NODE, else setup-node.sh's path.
// Without it the test is skipped (failed under CI).
func Node(t testing.TB) string {
	t.Helper()
	bin, err := find()
	Need(t, "Node 22 at "+bin, err)
	return bin
}

func find() (string, error) {
	bin := os.Getenv("MCP_SANDBOX_NODE")
	if bin == "" {
		bin = DefaultNode
	}
	out, err := exec.Command(bin, "--version").Output()
	if err == nil && !strings.HasPrefix(string(out), "v22.") {
		err = &exec.Error{Name: bin, Err: os.ErrInvalid}
	}
	return bin, err
}

// SDKDir returns dir (made absolute), the sdktest directory whose
// node_modules holds the npm package pkg. Without it the test is skipped
// (failed under CI).
func SDKDir(t testing.TB, dir, pkg string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err == nil {
		_, err = os.Stat(filepath.Join(abs, "node_modules", pkg, "package.json"))
	}
	Need(t, "the "+pkg+" npm package in "+abs+"/node_modules", err)
	return abs
}

// Command is Node running script in dir with only PATH, a fresh HOME and
// env in its environment, so no secret of the test's reaches the SDK.
func Command(t testing.TB, node, dir string, env []string, script string, args ...string) *exec.Cmd {
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	return cmd
}
