// Package gosdkclient drives mcp-sandbox with the official Go SDK
// (github.com/modelcontextprotocol/go-sdk) over stdio and streamable HTTP,
// and checks every structuredContent against its tool's outputSchema. It is
// a module of its own, so that the server's dependencies stay as they are;
// cmd/mcp-sandbox's TestGoSDKClient runs its tests against the built binary
// (MCP_SANDBOX_BINARY).
package gosdkclient
