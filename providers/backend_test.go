package providers_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
)

// The three ways Run can go, each on the same real driver with some of its
// methods hidden: its own RunProcess, StartProcess followed by waits, and
// plain Exec.
func TestRunFallsBackByTheMethodsADriverHas(t *testing.T) {
	d, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	type processesOnly struct {
		providers.Provider
		providers.Processes
	}
	for _, tc := range []struct {
		name       string
		driver     providers.Provider
		canDetach  bool
		hasProcess bool
	}{
		{"RunProcess", d, true, true},
		{"StartProcess", processesOnly{d, d}, true, true},
		{"Exec", struct{ providers.Provider }{d}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := providers.NewBackend(tc.driver)
			if b.HasProcesses() != tc.hasProcess {
				t.Fatalf("HasProcesses = %v", b.HasProcesses())
			}
			ctx := context.Background()
			sb, err := b.Create(ctx, providers.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Destroy(context.Background(), sb.ID) })

			var out, errOut bytes.Buffer
			res, err := b.Run(ctx, sb.ID, providers.RunRequest{
				ProcessSpec: providers.ProcessSpec{Command: "echo out; echo err >&2; exit 3", Timeout: time.Minute},
				Wait:        time.Minute, KeepAfter: 1 << 20, Stdout: &out, Stderr: &errOut,
			})
			if err != nil || res.ExitCode != 3 || res.Running || res.ProcessID != "" || out.String() != "out\n" || errOut.String() != "err\n" {
				t.Fatalf("quick run: %+v %v, stdout %q, stderr %q", res, err, out.String(), errOut.String())
			}

			out.Reset()
			start := time.Now()
			res, err = b.Run(ctx, sb.ID, providers.RunRequest{
				ProcessSpec: providers.ProcessSpec{Command: "echo started; sleep 4; echo done", Timeout: time.Minute},
				Wait:        2 * time.Second, KeepAfter: 1 << 20, Stdout: &out,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.canDetach {
				if res.Running || res.ExitCode != 0 || out.String() != "started\ndone\n" || time.Since(start) < 4*time.Second {
					t.Fatalf("Exec cannot detach, so it runs to the end: %+v %q", res, out.String())
				}
				return
			}
			if !res.Running || res.ProcessID == "" || out.String() != "started\n" {
				t.Fatalf("a run past its wait must detach with the output so far: %+v %q", res, out.String())
			}
			in, err := b.WaitProcess(ctx, sb.ID, res.ProcessID, 30*time.Second)
			if err != nil || in.Running || in.ExitCode != 0 {
				t.Fatalf("the detached run: %+v %v", in, err)
			}
		})
	}
}

func TestBackendChecksArgumentsOnceAndNamesTheProvider(t *testing.T) {
	d, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	b := providers.NewBackend(d)
	ctx := context.Background()
	sb, err := b.Create(ctx, providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Destroy(context.Background(), sb.ID) })
	for _, tc := range []struct {
		name string
		err  error
		kind error
		want string
	}{
		{"NUL in a command", func() error {
			_, err := b.Exec(ctx, sb.ID, providers.ExecRequest{Command: "echo a\x00b"})
			return err
		}(), providers.ErrInvalidArgument, "NUL byte"},
		{"empty command", func() error { _, err := b.Exec(ctx, sb.ID, providers.ExecRequest{Command: "  "}); return err }(), providers.ErrInvalidArgument, "command is empty"},
		{"bad env", func() error {
			_, err := b.Exec(ctx, sb.ID, providers.ExecRequest{Command: "true", Env: map[string]string{"A=B": "x"}})
			return err
		}(), providers.ErrInvalidArgument, "A=B"},
		{"ID that names a path", func() error { _, err := b.Get(ctx, "../x"); return err }(), providers.ErrNotFound, "not found"},
		{"process ID that names a path", b.SignalProcess(ctx, sb.ID, "../1", "TERM"), providers.ErrNotFound, "not found"},
		{"unknown signal", b.SignalProcess(ctx, sb.ID, "1", "SIGFOO"), providers.ErrInvalidArgument, "TERM, KILL"},
		{"empty path", b.WriteFile(ctx, sb.ID, "", nil, 0), providers.ErrInvalidArgument, "path is empty"},
		{"driver's own error", func() error { _, _, err := b.ReadFile(ctx, sb.ID, "missing.txt"); return err }(), providers.ErrNotFound, "local: "},
	} {
		if !errors.Is(tc.err, tc.kind) || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a %v error containing %q", tc.name, tc.err, tc.kind, tc.want)
		}
	}
	if sig, err := providers.ParseSignal("sigkill"); sig != "KILL" || err != nil {
		t.Errorf("ParseSignal(sigkill) = %q, %v", sig, err)
	}
	var driver providers.Provider
	if !b.As(&driver) || driver != providers.Provider(d) {
		t.Error("As does not reach the driver")
	}
}
