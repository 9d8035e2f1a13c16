package runloopfake_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
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
	_, err := os.Stat(filepath.Join(dir, "node_modules", "@runloop", "api-client", "package.json"))
	need(t, "the @runloop/api-client npm package in "+dir+"/node_modules", err)
	return dir
}

// serve runs the fake on loopback with HTTP/1.1 and h2c, as the SDK needs.
func serve(t *testing.T, opts runloopfake.Options) (*runloopfake.Server, string) {
	t.Helper()
	fake, err := runloopfake.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := fake.HTTPServer()
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		fake.Close()
	})
	return fake, "http://" + ln.Addr().String()
}

// TestOfficialSDKAgainstFake runs Runloop's own TypeScript SDK, over HTTP/2
// (its default) and over HTTP/1.1, through create -> exec -> files ->
// shutdown against the fake; contract.mjs asserts every result. The fake
// answers the first long poll of each devbox with 408, as Runloop does when
// a devbox takes longer than one poll, so the SDK's re-asking is exercised.
func TestOfficialSDKAgainstFake(t *testing.T) {
	node := node22(t)
	dir := sdkDir(t)
	fake, url := serve(t, runloopfake.Options{APIKey: "contract-key", ProvisionDelay: 300 * time.Millisecond, LongPoll: 100 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "contract.mjs")
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"RUNLOOP_BASE_URL=" + url,
		"RUNLOOP_API_KEY=contract-key",
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "contract ok") {
		t.Fatalf("contract.mjs failed: %v\n%s", err, out)
	}
	if left := fake.Devboxes(); len(left) != 0 {
		t.Fatalf("the SDK shut its devboxes down, but the fake still runs %d", len(left))
	}
	if n := fake.Creates(); n != 2 { // one devbox per transport; the wrong key never reaches create
		t.Errorf("the fake saw %d creates, want 2", n)
	}
}
