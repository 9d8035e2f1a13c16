package tools_test

import (
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// The model is told what confines each sandbox: sandbox_create and
// sandbox_list say it in the structured result and in the text, and the
// workdir is the path commands see.
func TestSandboxesSayWhatConfinesThem(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	res, out := call(t, c, "sandbox_create", map[string]any{"name": "iso"})
	iso, _ := out["isolation"].(map[string]any)
	if iso == nil || iso["level"] != "namespaces" || iso["network"] != "loopback only" || !strings.Contains(iso["limits"].(string), "processes 512") {
		t.Fatalf("sandbox_create's isolation: %v", out["isolation"])
	}
	if out["workdir"] != "/workspace" {
		t.Errorf("workdir %v, want /workspace", out["workdir"])
	}
	if txt := text(res); !strings.Contains(txt, "isolation namespaces, network loopback only") {
		t.Errorf("sandbox_create's text does not say the isolation: %q", txt)
	}
	pwd := mustCall(t, c, "run_command", map[string]any{"command": "pwd"})
	if pwd["stdout"] != "/workspace\n" {
		t.Errorf("commands start in %q, want the workdir /workspace", pwd["stdout"])
	}
	list, listed := call(t, c, "sandbox_list", nil)
	sbs := listed["sandboxes"].([]any)
	if got := sbs[0].(map[string]any)["isolation"]; got == nil || got.(map[string]any)["level"] != "namespaces" {
		t.Errorf("sandbox_list's isolation: %v", got)
	}
	if !strings.Contains(text(list), "isolation namespaces") {
		t.Errorf("sandbox_list's text does not say the isolation: %q", text(list))
	}
}
