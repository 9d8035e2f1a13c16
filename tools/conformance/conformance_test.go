package conformance

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

func newServer() *server.MCPServer {
	s := server.NewMCPServer("conformance-test", "0", ServerOptions()...)
	Register(s)
	return s
}

func startInProcess(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.NewInProcessClient(newServer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION}}); err != nil {
		t.Fatal(err)
	}
	return c
}

// The suite calls these names; a missing or renamed one fails a scenario.
var wantTools = []string{
	"test_audio_content", "test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums",
	"test_embedded_resource", "test_error_handling", "test_image_content", "test_multiple_content_types",
	"test_sampling", "test_simple_text", "test_tool_with_logging", "test_tool_with_progress",
}

func TestToolsAreListedWithDescriptionsAndSchemas(t *testing.T) {
	c := startInProcess(t)
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" {
			t.Errorf("tool %s has no description (the tools-list scenario requires one)", tool.Name)
		}
		raw, err := json.Marshal(tool)
		if err != nil {
			t.Errorf("tool %s does not marshal: %v", tool.Name, err)
			continue
		}
		var decoded struct {
			InputSchema struct {
				Type string `json:"type"`
			} `json:"inputSchema"`
		}
		if err := json.Unmarshal(raw, &decoded); err != nil || decoded.InputSchema.Type != "object" {
			t.Errorf("tool %s: inputSchema.type = %q, want object (%s)", tool.Name, decoded.InputSchema.Type, raw)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, wantTools) {
		t.Errorf("tools = %v\nwant    %v", names, wantTools)
	}
}

func TestToolResults(t *testing.T) {
	c := startInProcess(t)
	tests := []struct {
		tool      string
		isError   bool
		wantTypes []string
		wantText  string
	}{
		{tool: "test_simple_text", wantTypes: []string{"text"}, wantText: "simple text response"},
		{tool: "test_image_content", wantTypes: []string{"image"}},
		{tool: "test_audio_content", wantTypes: []string{"audio"}},
		{tool: "test_embedded_resource", wantTypes: []string{"resource"}},
		{tool: "test_multiple_content_types", wantTypes: []string{"text", "image", "resource"}},
		{tool: "test_error_handling", isError: true, wantTypes: []string{"text"}, wantText: "intentionally returns an error"},
		{tool: "test_tool_with_progress", wantTypes: []string{"text"}, wantText: "no progress token"},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			res, err := c.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tt.tool}})
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError != tt.isError {
				t.Errorf("isError = %v, want %v", res.IsError, tt.isError)
			}
			var types []string
			var text strings.Builder
			for _, content := range res.Content {
				switch content := content.(type) {
				case mcp.TextContent:
					types = append(types, "text")
					text.WriteString(content.Text)
				case mcp.ImageContent:
					types = append(types, "image")
				case mcp.AudioContent:
					types = append(types, "audio")
				case mcp.EmbeddedResource:
					types = append(types, "resource")
				default:
					types = append(types, "unknown")
				}
			}
			if !slices.Equal(types, tt.wantTypes) {
				t.Errorf("content types = %v, want %v", types, tt.wantTypes)
			}
			if !strings.Contains(text.String(), tt.wantText) {
				t.Errorf("text %q does not contain %q", text.String(), tt.wantText)
			}
		})
	}
}

func TestResourcesAndPrompts(t *testing.T) {
	c := startInProcess(t)
	ctx := context.Background()

	read, err := c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "test://template/123/data"}})
	if err != nil {
		t.Fatal(err)
	}
	if text, ok := read.Contents[0].(mcp.TextResourceContents); !ok || !strings.Contains(text.Text, `"id":"123"`) {
		t.Errorf("template read = %#v, want text with id 123", read.Contents)
	}
	read, err = c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "test://static-binary"}})
	if err != nil {
		t.Fatal(err)
	}
	if blob, ok := read.Contents[0].(mcp.BlobResourceContents); !ok || blob.MIMEType != "image/png" {
		t.Errorf("static-binary = %#v, want an image/png blob", read.Contents)
	}

	prompt, err := c.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{
		Name: "test_prompt_with_arguments", Arguments: map[string]string{"arg1": "first", "arg2": "second"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if text, ok := prompt.Messages[0].Content.(mcp.TextContent); !ok || !strings.Contains(text.Text, "arg1='first'") || !strings.Contains(text.Text, "arg2='second'") {
		t.Errorf("prompt = %#v, want both arguments substituted", prompt.Messages)
	}
}

// TestNotificationsArriveBeforeTheResult guards the fix in
// third_party/mcp-go (see its README): over Streamable HTTP every
// notification a tool sends must reach the client on the call's own stream,
// before the result. The client keeps a standalone GET stream open, as the
// TypeScript SDK does, so a notification that leaks onto it, or one dropped
// by the forwarder race, fails the test. Unpatched mcp-go v1.2.1 fails this
// in most rounds.
func TestNotificationsArriveBeforeTheResult(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var got []mcp.JSONRPCNotification
	c := startHTTP(t, newServer(), func(n mcp.JSONRPCNotification) {
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	})

	const rounds = 10
	for _, tool := range []string{"test_tool_with_progress", "test_tool_with_logging"} {
		t.Run(tool, func(t *testing.T) {
			lost := 0
			for round := range rounds {
				mu.Lock()
				got = nil
				mu.Unlock()
				req := mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool}}
				req.Params.Meta = &mcp.Meta{ProgressToken: mcp.ProgressToken(float64(round + 1))}
				res, err := c.CallTool(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if res.IsError {
					t.Fatalf("round %d: tool error %v", round, res.Content)
				}
				mu.Lock()
				n := len(got)
				mu.Unlock()
				if n != 3 {
					lost++
					t.Errorf("round %d: %d of 3 notifications arrived before the result", round, n)
				}
			}
			if lost > 0 {
				t.Errorf("%d of %d rounds lost notifications", lost, rounds)
			}
		})
	}
}

// startHTTP serves s over Streamable HTTP and connects a client that keeps a
// standalone GET stream open, as the TypeScript SDK does. The client calls
// onNotification as it reads each notification, so one that precedes a
// response on the same stream is seen before the call returns.
func startHTTP(t *testing.T, s *server.MCPServer, onNotification func(mcp.JSONRPCNotification)) *client.Client {
	t.Helper()
	h := server.NewStreamableHTTPServer(s, server.WithStateful(true),
		server.WithStreamableHTTPProtocolVersions(mcp.LegacyProtocolVersions()...))
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	tr, err := transport.NewStreamableHTTP(ts.URL, transport.WithContinuousListening())
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewClient(tr)
	t.Cleanup(func() { c.Close() })
	c.OnNotification(onNotification)
	// Start's context also bounds the GET stream: keep it for the whole test.
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION}}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNotificationAfterTheCallStillArrives: a notification sent with a
// call's context after the call has been answered can no longer go on the
// call's stream; the patched mcp-go then sends it on the session's GET
// stream instead of queueing it where nobody reads.
func TestNotificationAfterTheCallStillArrives(t *testing.T) {
	s := newServer()
	returned := make(chan struct{})
	s.AddTool(mcp.NewTool("late_notifier", mcp.WithDescription("notifies after it has returned")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			go func() {
				<-returned
				time.Sleep(50 * time.Millisecond) // let the response path finish
				s.SendNotificationToClient(ctx, string(mcp.MethodNotificationMessage), map[string]any{
					"level": "info", "data": "late",
				})
			}()
			return mcp.NewToolResultText("returned"), nil
		})
	notes := make(chan mcp.JSONRPCNotification, 10)
	c := startHTTP(t, s, func(n mcp.JSONRPCNotification) { notes <- n })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "late_notifier"}}); err != nil {
		t.Fatal(err)
	}
	close(returned)
	select {
	case n := <-notes:
		if data := n.Params.AdditionalFields["data"]; data != "late" {
			t.Errorf("got %v, want the late notification", n.Params.AdditionalFields)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a notification sent after the call returned was lost")
	}
}
