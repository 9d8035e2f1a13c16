package e2bfake_test

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
	fspb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/process"
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

// sdkDir is the directory holding the pinned e2b SDK in node_modules.
func sdkDir(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs("sdktest")
	_, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json"))
	need(t, "the e2b npm package in "+dir+"/node_modules", err)
	return dir
}

// TestOfficialSDKAgainstFake runs E2B's own JS SDK through create ->
// commands.run -> files.write -> files.read -> kill (and more) against the
// fake; contract.mjs asserts every result.
func TestOfficialSDKAgainstFake(t *testing.T) {
	node := node22(t)
	dir := sdkDir(t)
	fake, err := e2bfake.New(e2bfake.Options{APIKey: "contract-key"})
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
		"E2B_API_URL=" + srv.URL,
		"E2B_SANDBOX_URL=" + srv.URL,
		"E2B_API_KEY=contract-key",
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "contract ok") {
		t.Fatalf("contract.mjs failed: %v\n%s", err, out)
	}
	if left := fake.Sandboxes(); len(left) != 0 {
		t.Fatalf("the SDK killed its sandbox, but the fake still runs %d", len(left))
	}
}

// TestProtoMatchesSDK checks our .proto files against the descriptors the
// official SDK embeds: same messages, fields, numbers, types and services.
func TestProtoMatchesSDK(t *testing.T) {
	dir := sdkDir(t)
	js, err := os.ReadFile(filepath.Join(dir, "node_modules", "e2b", "dist", "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	sdk := map[string]*descriptorpb.FileDescriptorProto{}
	for _, m := range regexp.MustCompile(`fileDesc\)\("([A-Za-z0-9+/]+)"`).FindAllStringSubmatch(string(js), -1) {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(m[1], "="))
		if err != nil {
			t.Fatal(err)
		}
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(b, fd); err != nil {
			t.Fatal(err)
		}
		sdk[fd.GetName()] = fd
	}
	for _, ours := range []protoreflect.FileDescriptor{pb.File_process_process_proto, fspb.File_filesystem_filesystem_proto} {
		theirs, ok := sdk[ours.Path()]
		if !ok {
			t.Fatalf("the SDK embeds no %s (found %d descriptors)", ours.Path(), len(sdk))
		}
		mine := protodesc.ToFileDescriptorProto(ours)
		for _, fd := range []*descriptorpb.FileDescriptorProto{mine, theirs} {
			// protobuf-es embeds imports separately, not as dependencies.
			fd.Options, fd.SourceCodeInfo, fd.Dependency = nil, nil, nil
			for _, m := range fd.MessageType {
				clearJSONNames(m)
			}
		}
		if !proto.Equal(mine, theirs) {
			t.Errorf("%s differs from the SDK's:\nours:   %v\ntheirs: %v", ours.Path(), mine, theirs)
		}
	}
}

func clearJSONNames(m *descriptorpb.DescriptorProto) {
	for _, f := range m.Field {
		f.JsonName = nil
	}
	for _, n := range m.NestedType {
		clearJSONNames(n)
	}
}
