package httpguard

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

// BenchmarkToolCall measures one tools/call over HTTP in an open session,
// straight to mcp-go (the baseline) and through the guard with every check
// on (Origin, token, body cap, session tracking):
//
//	go test -run '^$' -bench ToolCall -count 6 ./cmd/mcp-sandbox/internal/httpguard
func BenchmarkToolCall(b *testing.B) {
	for _, bc := range []struct {
		name    string
		guarded bool
	}{{"baseline", false}, {"guarded", true}} {
		b.Run(bc.name, func(b *testing.B) {
			limiter := NewSessionLimiter(1000, 0, 0)
			hooks := &server.Hooks{}
			limiter.AddHooks(hooks)
			s := server.NewMCPServer("bench", "0", server.WithHooks(hooks))
			s.AddTool(mcp.NewTool("echo", mcp.WithDescription("echoes"), mcp.WithString("text")),
				func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return mcp.NewToolResultText(req.GetString("text", "")), nil
				})
			var h http.Handler = server.NewStreamableHTTPServer(s, server.WithStateful(true))
			if bc.guarded {
				h = New(Config{Token: testToken, Sessions: limiter, Logger: slog.New(slog.DiscardHandler)}).Handler(h)
			}
			ts := httptest.NewServer(h)
			defer ts.Close()

			send := func(body, session string) *http.Response {
				req, _ := http.NewRequest(http.MethodPost, ts.URL, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Authorization", "Bearer "+testToken)
				req.Header.Set("Origin", "http://localhost:6274")
				if session != "" {
					req.Header.Set(sessionHeader, session)
				}
				resp, err := ts.Client().Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %s", resp.Status)
				}
				return resp
			}
			id := send(initializeBody, "").Header.Get(sessionHeader)
			call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`
			b.ResetTimer()
			for b.Loop() {
				send(call, id)
			}
		})
	}
}
