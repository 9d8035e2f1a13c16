package docker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Commands go through one channel per sandbox (the helper serving in it);
// when something in the sandbox kills the helper, the next command opens
// another, and a driver without a channel runs them by engine exec.
func TestCommandsThroughTheChannel(t *testing.T) {
	set := settings()
	p := open(t, set)
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	run := func(p providers.ProcessRunner, cmd string) string {
		t.Helper()
		var out strings.Builder
		res, err := p.RunProcess(ctx, sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: cmd}, Wait: 20 * time.Second, KeepAfter: 1 << 20, Stdout: &out})
		if err != nil || res.ExitCode != 0 || res.ProcessID != "" {
			t.Fatalf("%q: %+v %v", cmd, res, err)
		}
		return out.String()
	}
	// Helpers serving as a channel, found by their command line.
	const serving = `n=0; for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null | grep -q 'mcp-sandbox-supervisor-[0-9a-f]* serve' && n=$((n+1)); done; echo $n`
	if out := run(p, "echo first"); out != "first\n" {
		t.Fatalf("first command: %q", out)
	}
	if !p.WaitChannel(sb.ID, time.Minute) {
		t.Fatal("no channel opened after the first command")
	}
	if out := run(p, "echo second"); out != "second\n" {
		t.Fatalf("second command: %q", out)
	}
	if n := strings.TrimSpace(sh(t, p, sb.ID, serving)); n != "1" {
		t.Fatalf("%s helpers serve the sandbox; want 1", n)
	}
	sh(t, p, sb.ID, `for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null | grep -q 'mcp-sandbox-supervisor-[0-9a-f]* serve' && { p=${f#/proc/}; kill -9 ${p%/cmdline}; }; done; true`)
	if out := run(p, "echo again"); out != "again\n" {
		t.Fatalf("after the helper was killed: %q", out)
	}
	if !p.WaitChannel(sb.ID, time.Minute) {
		t.Fatal("no channel opened again after the helper was killed")
	}
	if n := strings.TrimSpace(sh(t, p, sb.ID, serving)); n != "1" {
		t.Fatalf("%s helpers serve the sandbox after one was killed; want 1", n)
	}

	viaExec := open(t, set)
	viaExec.UseEngineExec()
	if out := run(viaExec, "echo by exec"); out != "by exec\n" {
		t.Fatalf("by engine exec: %q", out)
	}
}
