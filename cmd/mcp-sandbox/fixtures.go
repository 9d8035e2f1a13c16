package main

import "github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

// conformanceFixtures serves the MCP conformance suite's fixed test tools,
// resources and prompts. Production builds have none: it is set only in
// builds with -tags conformance (fixtures_conformance.go), which the tests
// use.
var conformanceFixtures *fixtureSet

type fixtureSet struct {
	options  func() []server.ServerOption
	register func(*server.MCPServer)
}
