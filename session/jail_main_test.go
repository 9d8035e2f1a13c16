package session_test

import (
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail/jailtest"
)

// TestMain lets this test binary be the PID 1 of the local sandboxes its
// tests create, as the server binary is.
func TestMain(m *testing.M) { jailtest.Main(m) }
