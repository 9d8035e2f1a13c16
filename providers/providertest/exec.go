package providertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func (h *harness) testExec(t *testing.T) {
	sb := h.sandbox(t, providers.CreateOptions{Name: "exec", Env: map[string]string{"FROM_CREATE": "created", "OVERRIDDEN": "create"}})
	id := sb.ID

	// Run first, alone: the memory bound below must not count other tests'
	// work.
	t.Run("LargeOutputIsStreamedNotBuffered", func(t *testing.T) {
		const size = 24 << 20
		var out, errOut countingWriter
		// Peak heap, sampled while the command runs: a driver that streams
		// keeps it near where it was (decoders may allocate per chunk; the
		// garbage collector keeps up), one that buffers holds the whole
		// output at once. A tight GC target keeps the garbage of a
		// streaming driver (and of an in-process fake) from reading as
		// held output, which a buffering driver still shows in full.
		defer debug.SetGCPercent(debug.SetGCPercent(20))
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base, peak := ms.HeapAlloc, ms.HeapAlloc
		stop, sampled := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapAlloc)
				}
			}
		}()
		res, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{
			Command: fmt.Sprintf("head -c %d /dev/zero; echo done >&2", size),
			Stdout:  &out, Stderr: &errOut,
		})
		close(stop)
		<-sampled
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exit %d, err %v", res.ExitCode, err)
		}
		if out.n != size || out.nonZero {
			t.Fatalf("stdout got %d bytes (non-zero bytes seen: %v), want %d zero bytes", out.n, out.nonZero, size)
		}
		if errOut.n != int64(len("done\n")) {
			t.Errorf("stderr got %d bytes, want %q", errOut.n, "done\n")
		}
		if out.maxWrite > 1<<20 {
			t.Errorf("the driver handed over %d bytes in one Write: output is buffered, not streamed", out.maxWrite)
		}
		if grew := int64(peak) - int64(base); grew > size/2 {
			t.Errorf("the heap grew by %d bytes while %d bytes of output passed: the driver must stream, not buffer", grew, size)
		}
	})

	t.Run("ExitCodes", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			cmd  string
			want int
		}{
			{"true", 0},
			{"false", 1},
			{"exit 3", 3},
			{"exit 255", 255},
			{"no-such-command-xyz", 127},
			{"kill -9 $$", 128 + 9},
		} {
			res, _, _ := h.run(t, id, providers.ExecRequest{Command: tc.cmd})
			if res.ExitCode != tc.want || res.TimedOut {
				t.Errorf("%q: got %+v, want exit code %d", tc.cmd, res, tc.want)
			}
		}
	})

	t.Run("StdoutAndStderrApart", func(t *testing.T) {
		t.Parallel()
		res, out, errOut := h.run(t, id, providers.ExecRequest{Command: "echo out1; echo err1 >&2; echo out2; echo err2 >&2"})
		if res.ExitCode != 0 || out != "out1\nout2\n" || errOut != "err1\nerr2\n" {
			t.Errorf("got exit %d, stdout %q, stderr %q", res.ExitCode, out, errOut)
		}
		if res.Duration <= 0 {
			t.Errorf("Duration = %v, want the time the command took", res.Duration)
		}
	})

	t.Run("NilWritersDiscard", func(t *testing.T) {
		t.Parallel()
		res, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{Command: "echo out; echo err >&2; exit 4"})
		if err != nil || res.ExitCode != 4 {
			t.Errorf("got %+v, %v; want exit code 4", res, err)
		}
	})

	t.Run("NonUTF8BytesPreserved", func(t *testing.T) {
		t.Parallel()
		want := []byte{0xff, 0xfe, 0x00, 'a', 0x80, '\n', 0xc3}
		var out, errOut LockedBuffer
		_, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{
			Command: `printf '\377\376\000a\200\n\303'; printf '\377\000' >&2`,
			Stdout:  &out, Stderr: &errOut,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) || !bytes.Equal(errOut.Bytes(), []byte{0xff, 0}) {
			t.Errorf("stdout %x (want %x), stderr %x (want ff00)", out.Bytes(), want, errOut.Bytes())
		}
	})

	t.Run("Cwd", func(t *testing.T) {
		t.Parallel()
		h.sh(t, id, "mkdir -p cwd-test/sub && echo x > cwd-test/file")
		tests := []struct {
			cwd  string
			want string
		}{
			{"", sb.Workdir},
			{"cwd-test/sub", path.Join(sb.Workdir, "cwd-test/sub")},
			{path.Join(sb.Workdir, "cwd-test"), path.Join(sb.Workdir, "cwd-test")},
		}
		for _, tc := range tests {
			_, out, _ := h.run(t, id, providers.ExecRequest{Command: "pwd", Cwd: tc.cwd})
			if strings.TrimSpace(out) != tc.want {
				t.Errorf("cwd %q: pwd = %q, want %q", tc.cwd, strings.TrimSpace(out), tc.want)
			}
		}
		_, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{Command: "pwd", Cwd: "cwd-test/missing"})
		wantKind(t, "Exec in a missing cwd", err, providers.ErrNotFound, "cwd-test/missing")
		_, err = h.p.Exec(testCtx(t), id, providers.ExecRequest{Command: "pwd", Cwd: "cwd-test/file"})
		wantKind(t, "Exec in a cwd that is a file", err, providers.ErrInvalidArgument, "cwd-test/file")
	})

	t.Run("Env", func(t *testing.T) {
		t.Parallel()
		_, out, _ := h.run(t, id, providers.ExecRequest{
			Command: `printf '%s|%s|%s|%s' "$FROM_CREATE" "$OVERRIDDEN" "$PER_CALL" "$SPACES"`,
			Env:     map[string]string{"OVERRIDDEN": "call", "PER_CALL": "yes", "SPACES": "a b  'c' \"d\" $x"},
		})
		if want := `created|call|yes|a b  'c' "d" $x`; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
		// Per-call env does not stick to the sandbox.
		_, out, _ = h.run(t, id, providers.ExecRequest{Command: `printf '%s|%s' "$OVERRIDDEN" "$PER_CALL"`})
		if out != "create|" {
			t.Errorf("after a call with its own env, got %q, want %q", out, "create|")
		}
		_, out, _ = h.run(t, id, providers.ExecRequest{Command: "env"})
		if strings.Contains(out, h.secretValue) || strings.Contains(out, h.secretName) {
			t.Errorf("the test process's environment leaked into the sandbox:\n%s", out)
		}
		if !strings.Contains(out, "PATH=") {
			t.Errorf("commands get no PATH:\n%s", out)
		}
		_, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{Command: "true", Env: map[string]string{"BAD=NAME": "x"}})
		wantKind(t, "Exec with an invalid env name", err, providers.ErrInvalidArgument, "BAD=NAME")
	})

	t.Run("Stdin", func(t *testing.T) {
		t.Parallel()
		if !h.p.Capabilities().Has(providers.CapStdin) {
			t.Skip("driver does not declare CapStdin (checked under Capabilities)")
		}
		in := append([]byte("line one\n"), 0x00, 0xff, 0xfe, '\n')
		in = append(in, bytes.Repeat([]byte("0123456789abcdef"), 64<<10)...) // 1 MiB: more than a pipe buffer
		var out LockedBuffer
		res, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{Command: "cat", Stdin: bytes.NewReader(in), Stdout: &out})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("got %+v, %v", res, err)
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Errorf("cat of %d bytes of stdin gave back %d bytes, not the same", len(in), len(out.Bytes()))
		}
	})

	t.Run("NoStdinMeansEOF", func(t *testing.T) {
		t.Parallel()
		// A command reading stdin must see end-of-file, not hang.
		res, out, _ := h.run(t, id, providers.ExecRequest{Command: "cat; echo done", Timeout: 20 * time.Second})
		if res.TimedOut || out != "done\n" {
			t.Errorf("got %+v, stdout %q", res, out)
		}
	})

	t.Run("OutputIsStreamed", func(t *testing.T) {
		t.Parallel()
		var out firstWriteWriter
		start := time.Now()
		_, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{Command: "echo first; sleep 1.5; echo second", Stdout: &out})
		end := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		if out.String() != "first\nsecond\n" {
			t.Fatalf("stdout %q", out.String())
		}
		if first := out.firstAt(); end.Sub(first) < 700*time.Millisecond {
			t.Errorf("the first line arrived %v after the start and %v before the end: output is not streamed", first.Sub(start), end.Sub(first))
		}
	})

	t.Run("TimeoutKillsProcessTree", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		res, out, _ := h.run(t, id, providers.ExecRequest{
			Command: "sleep 1000 & echo $! > timeout-child.pid; echo started; sleep 1000",
			// Long enough for a loaded machine to get as far as "started".
			Timeout: 2 * time.Second,
		})
		if took := time.Since(start); !res.TimedOut || took > 12*time.Second {
			t.Fatalf("got %+v after %v; want TimedOut soon after 2s", res, took)
		}
		if res.ExitCode == 0 {
			t.Errorf("a timed-out command reported exit code 0")
		}
		if out != "started\n" {
			t.Errorf("output before the timeout was %q, want %q", out, "started\n")
		}
		if h.p.Capabilities().Has(providers.CapKillTree) {
			h.waitDead(t, id, "timeout-child.pid")
		}
	})

	t.Run("CancelKillsProcessTree", func(t *testing.T) {
		t.Parallel()
		// Cancelled once the command has started its child (its first
		// output), not after a fixed time: a loaded engine may take longer
		// than that to start it at all.
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		startedAt := make(chan time.Time, 1)
		var once sync.Once
		stdout := writerFunc(func(b []byte) (int, error) {
			once.Do(func() { startedAt <- time.Now(); cancel() })
			return len(b), nil
		})
		backstop := time.AfterFunc(time.Minute, cancel)
		defer backstop.Stop()
		_, err := h.p.Exec(ctx, id, providers.ExecRequest{Command: "sleep 1000 & echo $! > cancel-child.pid; echo started; wait", Stdout: stdout})
		var cancelled time.Time
		select {
		case cancelled = <-startedAt:
		default:
			t.Fatalf("the command printed nothing within a minute (%v)", err)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
		if took := time.Since(cancelled); took > 10*time.Second {
			t.Fatalf("cancellation took %v to return", took)
		}
		if h.p.Capabilities().Has(providers.CapKillTree) {
			h.waitDead(t, id, "cancel-child.pid")
		}
	})

	t.Run("TrailingAmpersandDoesNotHang", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		res, out, _ := h.run(t, id, providers.ExecRequest{Command: "sleep 1000 & echo $! > bg.pid; echo started", Timeout: 30 * time.Second})
		if res.ExitCode != 0 || res.TimedOut || out != "started\n" {
			t.Fatalf("got %+v, stdout %q", res, out)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("a command ending with a background child took %v", took)
		}
		// The background child was meant to outlive the command.
		if got := strings.TrimSpace(h.sh(t, id, aliveScript("bg.pid"))); got != "alive" {
			t.Errorf("the background child is %s right after the command returned", got)
		}
		h.sh(t, id, "kill -9 $(cat bg.pid)")
	})

	t.Run("ConcurrentExecs", func(t *testing.T) {
		t.Parallel()
		const n = 6
		// Long enough that one after another (9 s) stands apart from
		// together plus a loaded machine's start-up costs.
		const nap = 1500 * time.Millisecond
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				var out, errOut LockedBuffer
				res, err := h.p.Exec(testCtx(t), id, providers.ExecRequest{
					Command: fmt.Sprintf("echo start-%d; sleep %g; echo end-%d >&2; exit %d", i, nap.Seconds(), i, i),
					Env:     map[string]string{"N": fmt.Sprint(i)},
					Stdout:  &out, Stderr: &errOut,
				})
				switch {
				case err != nil:
					errs[i] = err
				case res.ExitCode != i || out.String() != fmt.Sprintf("start-%d\n", i) || errOut.String() != fmt.Sprintf("end-%d\n", i):
					errs[i] = fmt.Errorf("exec %d: exit %d, stdout %q, stderr %q", i, res.ExitCode, out.String(), errOut.String())
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if took := time.Since(start); took >= n*nap {
			t.Errorf("%d concurrent execs of %v each took %v: they ran one after another", n, nap, took)
		}
	})
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
