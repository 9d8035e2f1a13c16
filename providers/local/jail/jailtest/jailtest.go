// Package jailtest lets a test binary serve as a local sandbox's PID 1, as
// the server binary does: a package whose tests create local sandboxes
// calls Main from its TestMain.
package jailtest

import (
	"os"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

// Main runs the tests, or a jail's PID 1 when the binary was started as one.
func Main(m *testing.M) {
	if jail.IsInit(os.Args) {
		os.Exit(jail.Main(os.Args))
	}
	os.Exit(m.Run())
}
