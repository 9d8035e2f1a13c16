package tools_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

const snapFile = "testdata/tools.snap.json"

// TestToolsSnapshot fails when a tool's name, description, schema or
// annotations change without the snapshot being reviewed and regenerated
// with UPDATE_TOOLSNAPS=1 go test ./tools.
func TestToolsSnapshot(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	list, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(list.Tools, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if os.Getenv("UPDATE_TOOLSNAPS") != "" {
		os.MkdirAll(filepath.Dir(snapFile), 0o755)
		if err := os.WriteFile(snapFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(snapFile)
	if err != nil {
		t.Fatalf("%v: create it with UPDATE_TOOLSNAPS=1 go test ./tools", err)
	}
	if !bytes.Equal(got, want) {
		os.WriteFile(snapFile+".new", got, 0o644)
		t.Fatalf("tools/list changed; review `diff %s %s.new`, then run UPDATE_TOOLSNAPS=1 go test ./tools", snapFile, snapFile)
	}
	for _, tool := range list.Tools {
		if tool.Description == "" || tool.Annotations.ReadOnlyHint == nil || tool.Annotations.DestructiveHint == nil {
			t.Errorf("%s: every tool needs a description and explicit annotations", tool.Name)
		}
	}
}
