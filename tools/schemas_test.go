package tools_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// TestSchemasAreCurrent: schemas.json must hold exactly what reflecting the
// tools' argument and result types gives.
func TestSchemasAreCurrent(t *testing.T) {
	newClient(t, tools.DefaultLimits) // registers every tool
	want, err := json.MarshalIndent(tools.SchemasForTest(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if os.Getenv("UPDATE_TOOLSNAPS") != "" {
		if err := os.WriteFile("schemas.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile("schemas.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("tools/schemas.json is stale: an argument or result type changed; run UPDATE_TOOLSNAPS=1 go test ./tools and review the diff")
	}
}
