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
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/nodesdk"
)

// TestOfficialSDKAgainstFake runs E2B's own JS SDK through create ->
// commands.run -> files.write -> files.read -> kill (and more) against the
// fake; contract.mjs asserts every result.
func TestOfficialSDKAgainstFake(t *testing.T) {
	node := nodesdk.Node(t)
	dir := nodesdk.SDKDir(t, "sdktest", "e2b")
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
	dir := nodesdk.SDKDir(t, "sdktest", "e2b")
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
