package tools_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

// third_party/jsonschema compiles the JSON Schema meta-schemas on
// first use instead of at package init (a 9 ms start-up saving). This proves
// the patched library still validates, also when first used concurrently.
func TestLazyMetaSchemasStillValidate(t *testing.T) {
	s := server.NewMCPServer("t", "1", server.WithInputSchemaValidation())
	tool := mcp.NewTool("echo", mcp.WithDescription("echo"), mcp.WithString("text", mcp.Required()))
	s.AddTool(tool, func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("ok"), nil
	})
	call := func(args string) string {
		msg := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":` + args + `}}`
		b, _ := json.Marshal(s.HandleMessage(context.Background(), json.RawMessage(msg)))
		return string(b)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := call(`{"text":42}`); !strings.Contains(got, "input schema validation failed") || !strings.Contains(got, `"isError":true`) {
				t.Errorf("a wrong type must fail validation, got %s", got)
			}
		}()
	}
	wg.Wait()
	if got := call(`{"text":"hi"}`); strings.Contains(got, "isError") {
		t.Fatalf("valid arguments failed: %s", got)
	}
}
