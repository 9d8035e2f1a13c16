// Package conformance registers the fixed tools, resources and prompts that the
// MCP conformance suite (@modelcontextprotocol/conformance, server scenarios)
// calls by name. They exist only to prove the protocol surface is correct and
// are registered only when the server runs with --conformance-fixtures, so a
// production tool list never shows them.
//
// The fixtures follow the scenario descriptions of conformance 0.1.16 and
// mcp-go's own reference server (examples/conformance).
package conformance

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"
)

// ServerOptions are the capabilities the suite checks for: resource
// subscriptions, prompts, logging, completions and elicitation. Pass them to
// server.NewMCPServer together with the server's own options.
func ServerOptions() []server.ServerOption {
	return []server.ServerOption{
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(true, true),
		server.WithPromptCapabilities(true),
		server.WithCompletions(),
		server.WithLogging(),
		server.WithElicitation(),
	}
}

// Register adds every fixture to s and enables sampling (which has no
// constructor option). s should have been built with ServerOptions.
func Register(s *server.MCPServer) {
	s.EnableSampling()
	s.AddTools(Tools(s)...)
	registerResources(s)
	registerPrompts(s)
}

// notificationGap spaces the log and progress notifications, as the scenario
// descriptions ask, so clients prove they receive notifications while a call
// is still running rather than in one burst.
const notificationGap = 50 * time.Millisecond

// Tools returns the fixture tools. Server-initiated requests (sampling,
// elicitation) go through s.
func Tools(s *server.MCPServer) []server.ServerTool {
	return []server.ServerTool{
		{
			Tool: mcp.NewTool("test_simple_text", mcp.WithDescription("Returns a simple text response for conformance testing")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText("This is a simple text response for testing."), nil
			},
		},
		{
			Tool: mcp.NewTool("test_image_content", mcp.WithDescription("Returns image content for conformance testing")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewImageContent(testImage, "image/png")}}, nil
			},
		},
		{
			Tool: mcp.NewTool("test_audio_content", mcp.WithDescription("Returns audio content for conformance testing")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewAudioContent(testAudio, "audio/wav")}}, nil
			},
		},
		{
			Tool: mcp.NewTool("test_embedded_resource", mcp.WithDescription("Returns an embedded text resource")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI: "test://embedded-resource", MIMEType: "text/plain", Text: "This is an embedded resource content.",
				})}}, nil
			},
		},
		{
			Tool: mcp.NewTool("test_multiple_content_types", mcp.WithDescription("Returns text, image, and embedded resource content")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{
					mcp.NewTextContent("Multiple content types test:"),
					mcp.NewImageContent(testImage, "image/png"),
					mcp.NewEmbeddedResource(mcp.TextResourceContents{
						URI: "test://mixed-content-resource", MIMEType: "application/json", Text: `{"test":"data","value":123}`,
					}),
				}}, nil
			},
		},
		{
			Tool: mcp.NewTool("test_error_handling", mcp.WithDescription("Returns an intentional tool error")),
			Handler: func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultError("This tool intentionally returns an error for testing"), nil
			},
		},
		{
			Tool: mcp.NewTool("test_tool_with_logging", mcp.WithDescription("Emits three log messages during execution")),
			Handler: func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				for i, message := range []string{"Tool execution started", "Tool processing data", "Tool execution completed"} {
					if i > 0 {
						time.Sleep(notificationGap)
					}
					err := s.SendNotificationToClient(ctx, string(mcp.MethodNotificationMessage), map[string]any{
						"level": "info", "logger": "conformance-test-server", "data": message,
					})
					if err != nil {
						return nil, err
					}
				}
				return mcp.NewToolResultText("Tool with logging executed successfully"), nil
			},
		},
		{
			Tool: mcp.NewTool("test_tool_with_progress", mcp.WithDescription("Reports progress 0, 50 and 100 of 100 for the request's progress token")),
			Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
					return mcp.NewToolResultText("no progress token was sent, so no progress was reported"), nil
				}
				for i, progress := range []int{0, 50, 100} {
					if i > 0 {
						time.Sleep(notificationGap)
					}
					err := s.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
						"progressToken": req.Params.Meta.ProgressToken, "progress": progress, "total": 100,
					})
					if err != nil {
						return nil, err
					}
				}
				return mcp.NewToolResultText("progress reported"), nil
			},
		},
		{
			Tool: mcp.NewTool("test_sampling", mcp.WithDescription("Requests an LLM response from the client"),
				mcp.WithString("prompt", mcp.Description("Prompt to send to the LLM"), mcp.Required())),
			Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				result, err := s.RequestSampling(ctx, mcp.CreateMessageRequest{
					Request: mcp.Request{Method: string(mcp.MethodSamplingCreateMessage)},
					CreateMessageParams: mcp.CreateMessageParams{
						Messages:  []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(req.GetString("prompt", ""))}},
						MaxTokens: 100,
					},
				})
				if err != nil {
					return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
				}
				text := "No response"
				if content, ok := result.Content.(mcp.TextContent); ok {
					text = content.Text
				}
				return mcp.NewToolResultText("LLM response: " + text), nil
			},
		},
		{
			Tool: mcp.NewTool("test_elicitation", mcp.WithDescription("Requests a username and email from the user"),
				mcp.WithString("message", mcp.Description("Message to show the user"), mcp.Required())),
			Handler: elicit(s, func(req mcp.CallToolRequest) (string, map[string]any) {
				return req.GetString("message", ""), map[string]any{
					"type": "object",
					"properties": map[string]any{
						"username": map[string]any{"type": "string", "description": "User's response"},
						"email":    map[string]any{"type": "string", "description": "User's email address"},
					},
					"required": []string{"username", "email"},
				}
			}, "User response"),
		},
		{
			Tool: mcp.NewTool("test_elicitation_sep1034_defaults", mcp.WithDescription("Requests elicitation with primitive defaults (SEP-1034)")),
			Handler: elicit(s, func(mcp.CallToolRequest) (string, map[string]any) {
				return "Provide your information", map[string]any{
					"type": "object",
					"properties": map[string]any{
						"name":     map[string]any{"type": "string", "default": "John Doe"},
						"age":      map[string]any{"type": "integer", "default": 30},
						"score":    map[string]any{"type": "number", "default": 95.5},
						"status":   map[string]any{"type": "string", "enum": []string{"active", "inactive", "pending"}, "default": "active"},
						"verified": map[string]any{"type": "boolean", "default": true},
					},
				}
			}, "Elicitation completed"),
		},
		{
			Tool: mcp.NewTool("test_elicitation_sep1330_enums", mcp.WithDescription("Requests elicitation with enum schemas (SEP-1330)")),
			Handler: elicit(s, func(mcp.CallToolRequest) (string, map[string]any) {
				titled := []any{map[string]any{"const": "value1", "title": "Value One"}, map[string]any{"const": "value2", "title": "Value Two"}}
				return "Select options", map[string]any{
					"type": "object",
					"properties": map[string]any{
						"untitledSingle": map[string]any{"type": "string", "enum": []string{"option1", "option2"}},
						"titledSingle":   map[string]any{"type": "string", "oneOf": titled},
						"legacyEnum":     map[string]any{"type": "string", "enum": []string{"opt1", "opt2"}, "enumNames": []string{"Option One", "Option Two"}},
						"untitledMulti":  map[string]any{"type": "array", "items": map[string]any{"type": "string", "enum": []string{"option1", "option2"}}},
						"titledMulti":    map[string]any{"type": "array", "items": map[string]any{"anyOf": titled}},
					},
				}
			}, "Elicitation completed"),
		},
	}
}

// elicit builds a handler that asks the client for input with the message and
// schema from ask, and reports the user's answer.
func elicit(s *server.MCPServer, ask func(mcp.CallToolRequest) (string, map[string]any), label string) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		message, schema := ask(req)
		result, err := s.RequestElicitation(ctx, mcp.ElicitationRequest{
			Request: mcp.Request{Method: string(mcp.MethodElicitationCreate)},
			Params:  mcp.ElicitationParams{Message: message, RequestedSchema: schema},
		})
		if err != nil {
			return mcp.NewToolResultError("elicitation failed: " + err.Error()), nil
		}
		return mcp.NewToolResultText(fmt.Sprintf("%s: action=%s, content=%v", label, result.Action, result.Content)), nil
	}
}

func registerResources(s *server.MCPServer) {
	s.AddResource(mcp.NewResource("test://static-text", "static-text",
		mcp.WithResourceTitle("Static Text Resource"), mcp.WithResourceDescription("A static text resource for testing"), mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: "test://static-text", MIMEType: "text/plain", Text: "This is the content of the static text resource."}}, nil
		})
	s.AddResource(mcp.NewResource("test://static-binary", "static-binary",
		mcp.WithResourceTitle("Static Binary Resource"), mcp.WithResourceDescription("A static binary resource for testing"), mcp.WithMIMEType("image/png")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.BlobResourceContents{URI: "test://static-binary", MIMEType: "image/png", Blob: testImage}}, nil
		})
	// The subscribe scenarios subscribe to this URI; it must be a listed resource.
	s.AddResource(mcp.NewResource("test://watched-resource", "watched-resource",
		mcp.WithResourceTitle("Watched Resource"), mcp.WithResourceDescription("A resource clients may subscribe to"), mcp.WithMIMEType("text/plain")),
		func(context.Context, mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: "test://watched-resource", MIMEType: "text/plain", Text: "Watched resource content."}}, nil
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate("test://template/{id}/data", "template",
		mcp.WithTemplateDescription("A resource template with parameter substitution"), mcp.WithTemplateMIMEType("application/json")),
		func(_ context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			id := strings.TrimSuffix(strings.TrimPrefix(req.Params.URI, "test://template/"), "/data")
			return []mcp.ResourceContents{mcp.TextResourceContents{
				URI: req.Params.URI, MIMEType: "application/json",
				Text: fmt.Sprintf(`{"id":%q,"templateTest":true,"data":%q}`, id, "Data for ID: "+id),
			}}, nil
		})
}

func registerPrompts(s *server.MCPServer) {
	s.AddPrompt(mcp.NewPrompt("test_simple_prompt",
		mcp.WithPromptTitle("Simple Test Prompt"), mcp.WithPromptDescription("A simple prompt without arguments")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				{Role: mcp.RoleUser, Content: mcp.NewTextContent("This is a simple prompt for testing.")},
			}}, nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_arguments",
		mcp.WithPromptTitle("Prompt With Arguments"), mcp.WithPromptDescription("A prompt with required arguments"),
		mcp.WithArgument("arg1", mcp.ArgumentDescription("First test argument"), mcp.RequiredArgument()),
		mcp.WithArgument("arg2", mcp.ArgumentDescription("Second test argument"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			text := fmt.Sprintf("Prompt with arguments: arg1='%s', arg2='%s'", req.Params.Arguments["arg1"], req.Params.Arguments["arg2"])
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(text)}}}, nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_embedded_resource",
		mcp.WithPromptTitle("Prompt With Embedded Resource"), mcp.WithPromptDescription("A prompt that includes an embedded resource"),
		mcp.WithArgument("resourceUri", mcp.ArgumentDescription("URI of the resource to embed"), mcp.RequiredArgument())),
		func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				{Role: mcp.RoleUser, Content: mcp.NewEmbeddedResource(mcp.TextResourceContents{
					URI: req.Params.Arguments["resourceUri"], MIMEType: "text/plain", Text: "Embedded resource content for testing.",
				})},
				{Role: mcp.RoleUser, Content: mcp.NewTextContent("Please process the embedded resource above.")},
			}}, nil
		})
	s.AddPrompt(mcp.NewPrompt("test_prompt_with_image",
		mcp.WithPromptTitle("Prompt With Image"), mcp.WithPromptDescription("A prompt that includes image content")),
		func(context.Context, mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []mcp.PromptMessage{
				{Role: mcp.RoleUser, Content: mcp.NewImageContent(testImage, "image/png")},
				{Role: mcp.RoleUser, Content: mcp.NewTextContent("Please analyze the image above.")},
			}}, nil
		})
}

// A 1x1 PNG and a minimal WAV, base64-encoded.
const (
	testImage = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
	testAudio = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
)
