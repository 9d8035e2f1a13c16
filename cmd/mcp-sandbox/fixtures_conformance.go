//go:build conformance

package main

import "github.com/mcp-sandbox/mcp-sandbox/tools/conformance"

func init() {
	conformanceFixtures = &fixtureSet{options: conformance.ServerOptions, register: conformance.Register}
}
