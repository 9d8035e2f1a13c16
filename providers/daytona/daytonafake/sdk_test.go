package daytonafake_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona/daytonafake"
)

// defaultNode is where .ci/setup-node.sh installs Node 22.
const defaultNode = "/opt/mcp-sandbox/node22/node_modules/node/bin/node"

// need skips the test when an external tool is missing, except under CI,
// where a skip would let the contract go unchecked.
func need(t *testing.T, what string, err error) {
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

// node22 finds Node 22: $MCP_SANDBOX_NODE, else setup-node.sh's path.
func node22(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("MCP_SANDBOX_NODE")
	if bin == "" {
		bin = defaultNode
	}
	out, err := exec.Command(bin, "--version").Output()
	if err == nil && !strings.HasPrefix(string(out), "v22.") {
		err = &exec.Error{Name: bin, Err: os.ErrInvalid}
		t.Logf("%s is %s, want v22", bin, strings.TrimSpace(string(out)))
	}
	need(t, "Node 22 at "+bin, err)
	return bin
}

// sdkDir is the directory holding the pinned SDK in node_modules.
func sdkDir(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs("sdktest")
	_, err := os.Stat(filepath.Join(dir, "node_modules", "@daytonaio", "sdk", "package.json"))
	need(t, "the @daytonaio/sdk npm package in "+dir+"/node_modules", err)
	return dir
}

// TestOfficialSDKAgainstFake runs Daytona's own TypeScript SDK through
// create -> commands -> sessions -> files -> list -> stop -> start -> delete
// against the fake; contract.mjs asserts every result.
func TestOfficialSDKAgainstFake(t *testing.T) {
	node := node22(t)
	dir := sdkDir(t)
	fake, err := daytonafake.New(daytonafake.Options{APIKey: "contract-key"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "contract.mjs")
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"DAYTONA_API_URL=" + srv.URL + "/api",
		"DAYTONA_API_KEY=contract-key",
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "contract ok") {
		t.Fatalf("contract.mjs failed: %v\n%s", err, out)
	}
	if left := fake.Sandboxes(); len(left) != 0 {
		t.Fatalf("the SDK deleted its sandbox, but the fake still has %d", len(left))
	}
}
