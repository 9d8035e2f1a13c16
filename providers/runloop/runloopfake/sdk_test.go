package runloopfake_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/nodesdk"
	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
)

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
	node := nodesdk.Node(t)
	dir := nodesdk.SDKDir(t, "sdktest", "@runloop/api-client")
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
