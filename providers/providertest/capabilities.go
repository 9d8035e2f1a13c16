package providertest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// testCapabilities checks each capability both ways: declared ones work,
// missing ones are refused cleanly.
func (h *harness) testCapabilities(t *testing.T) {
	caps := h.p.Capabilities()
	known := map[providers.Capability]bool{providers.CapStdin: true, providers.CapKillTree: true,
		providers.CapProcessIsolation: true, providers.CapNetworkIsolation: true}
	for _, c := range caps {
		if !known[c] {
			t.Errorf("driver declares unknown capability %q", c)
		}
	}
	sb := h.sandbox(t, providers.CreateOptions{Name: "caps"})

	t.Run("Stdin", func(t *testing.T) {
		t.Parallel()
		var out LockedBuffer
		res, err := h.p.Exec(testCtx(t), sb.ID, providers.ExecRequest{Command: "cat", Stdin: strings.NewReader("in"), Stdout: &out})
		if caps.Has(providers.CapStdin) {
			if err != nil || out.String() != "in" {
				t.Errorf("declares stdin, but cat gave %q, %v", out.String(), err)
			}
			return
		}
		// Without stdin support the call must say so rather than run the
		// command with input silently dropped.
		wantKind(t, "Exec with Stdin on a driver without CapStdin", err, providers.ErrUnsupported, "stdin")
		if err == nil {
			t.Errorf("ran the command anyway: %+v", res)
		}
	})

	t.Run("KillTreeOrTimeoutAtLeast", func(t *testing.T) {
		t.Parallel()
		// Even a driver that cannot reach background children must end the
		// command itself on time and report the timeout.
		start := time.Now()
		res, _, _ := h.run(t, sb.ID, providers.ExecRequest{Command: "sleep 1000", Timeout: 300 * time.Millisecond})
		if !res.TimedOut || time.Since(start) > 10*time.Second {
			t.Errorf("got %+v after %v; want TimedOut", res, time.Since(start))
		}
	})

	t.Run("NetworkIsolation", func(t *testing.T) {
		t.Parallel()
		if !caps.Has(providers.CapNetworkIsolation) {
			t.Skip("driver does not declare CapNetworkIsolation")
		}
		// With no network the only interface is loopback.
		out := h.sh(t, sb.ID, `tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '`)
		for _, iface := range strings.Fields(out) {
			if iface != "lo" {
				t.Errorf("declares network isolation, but the sandbox has interface %q (all: %q)", iface, out)
			}
		}
	})

	t.Run("ProcessIsolation", func(t *testing.T) {
		t.Parallel()
		if !caps.Has(providers.CapProcessIsolation) {
			t.Skip("driver does not declare CapProcessIsolation")
		}
		// A process on this machine with a unique command line must be
		// invisible from inside the sandbox.
		mark := fmt.Sprintf("1000.%d", time.Now().UnixNano()%1e9)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		host := exec.CommandContext(ctx, "sleep", mark)
		if err := host.Start(); err != nil {
			t.Skipf("cannot start a host process to look for: %v", err)
		}
		defer func() { cancel(); host.Wait() }()
		out := h.sh(t, sb.ID, `cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\000' ' '`)
		if strings.Contains(out, mark) {
			t.Errorf("declares process isolation, but the sandbox sees host process %q", "sleep "+mark)
		}
	})
}
