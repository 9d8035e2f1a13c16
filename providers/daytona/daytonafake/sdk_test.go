package daytonafake_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona/daytonafake"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/nodesdk"
)

// TestOfficialSDKAgainstFake runs Daytona's own TypeScript SDK through
// create -> commands -> sessions -> files -> list -> stop -> start -> delete
// against the fake; contract.mjs asserts every result.
func TestOfficialSDKAgainstFake(t *testing.T) {
	node := nodesdk.Node(t)
	dir := nodesdk.SDKDir(t, "sdktest", "@daytonaio/sdk")
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
