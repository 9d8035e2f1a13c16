package providertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// RunProcesses checks the optional providers.Processes methods; Run calls
// it for every driver that has them. newProvider follows the suite's
// NewProvider contract (every call returns a driver over the same backend),
// which lets it check that a second driver serves a process the first
// started.
//
// The commands used need sh, echo, seq, head, tee, cat, sleep and kill.
func RunProcesses(t *testing.T, newProvider func(t *testing.T) providers.Provider) {
	t.Helper()
	p := newProvider(t)
	pp, ok := p.(providers.Processes)
	if !ok {
		t.Skip("driver has no Processes")
	}
	s := &procSuite{p: p, pp: pp, newProvider: newProvider}
	t.Run("ExitStatusAndOutput", s.testExit)
	t.Run("PagingReadsEveryByteOnce", s.testPaging)
	t.Run("OutputLimitKeepsHeadAndTail", s.testOutputLimit)
	t.Run("Stdin", s.testStdin)
	t.Run("SignalReachesTheGroup", s.testSignal)
	t.Run("Timeout", s.testTimeout)
	t.Run("OutlivesTheStartCallAndTheDriver", s.testOutlives)
	t.Run("UnknownProcesses", s.testUnknown)
	t.Run("DestroyEndsProcesses", s.testDestroy)
	t.Run("ForegroundRun", s.testForeground)
	t.Run("NothingEscapesAKill", s.testEscapes)
}

type procSuite struct {
	p           providers.Provider
	pp          providers.Processes
	newProvider func(t *testing.T) providers.Provider
}

func procCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (s *procSuite) sandbox(t *testing.T) string {
	t.Helper()
	sb, err := s.p.Create(procCtx(t), providers.CreateOptions{Name: "processes"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.p.Destroy(ctx, sb.ID); err != nil && !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("cleanup: Destroy(%s): %v", sb.ID, err)
		}
	})
	return sb.ID
}

func (s *procSuite) start(t *testing.T, id string, spec providers.ProcessSpec) providers.ProcessInfo {
	t.Helper()
	in, err := s.pp.StartProcess(procCtx(t), id, spec)
	if err != nil {
		t.Fatalf("StartProcess(%q): %v", spec.Command, err)
	}
	if in.ID == "" || in.Command != spec.Command || in.StartedAt.IsZero() {
		t.Fatalf("StartProcess(%q) described it as %+v", spec.Command, in)
	}
	return in
}

func (s *procSuite) wait(t *testing.T, id, proc string) providers.ProcessInfo {
	t.Helper()
	in, err := s.pp.WaitProcess(procCtx(t), id, proc, 30*time.Second)
	if err != nil || in.Running {
		t.Fatalf("WaitProcess(%s): %+v, %v", proc, in, err)
	}
	return in
}

// readProcessOutput pages a stream to its end, checking that pages are contiguous.
func readProcessOutput(t *testing.T, pp providers.Processes, id, proc string, stream providers.Stream, limit int) []byte {
	t.Helper()
	var all []byte
	for off := int64(0); ; {
		out, err := pp.ReadOutput(procCtx(t), id, proc, providers.OutputRequest{Stream: stream, Offset: off, Limit: limit})
		if err != nil {
			t.Fatalf("ReadOutput(%s, %d): %v", stream, off, err)
		}
		if out.Offset != off || out.Skipped != 0 || len(out.Data) > limit {
			t.Fatalf("ReadOutput(%s, %d): %d bytes at %d, skipped %d", stream, off, len(out.Data), out.Offset, out.Skipped)
		}
		all = append(all, out.Data...)
		off += int64(len(out.Data))
		if len(out.Data) == 0 {
			if off != out.Total {
				t.Fatalf("ReadOutput(%s): stopped at %d of %d bytes", stream, off, out.Total)
			}
			return all
		}
	}
}

func (s *procSuite) testExit(t *testing.T) {
	id := s.sandbox(t)
	in := s.start(t, id, providers.ProcessSpec{Command: "echo out; echo err >&2; echo $GREETING; exit 7", Env: map[string]string{"GREETING": "hi"}})
	in = s.wait(t, id, in.ID)
	if in.ExitCode != 7 || in.TimedOut || in.EndedAt.Before(in.StartedAt) || in.StdoutBytes != 7 || in.StderrBytes != 4 {
		t.Fatalf("after exit: %+v", in)
	}
	if got := readProcessOutput(t, s.pp, id, in.ID, providers.Stdout, 3); string(got) != "out\nhi\n" {
		t.Errorf("stdout %q", got)
	}
	if got := readProcessOutput(t, s.pp, id, in.ID, providers.Stderr, 100); string(got) != "err\n" {
		t.Errorf("stderr %q", got)
	}
	list, err := s.pp.ListProcesses(procCtx(t), id)
	if err != nil || len(list) != 1 || list[0].ID != in.ID || list[0].ExitCode != 7 {
		t.Errorf("ListProcesses: %+v, %v", list, err)
	}
	second := s.start(t, id, providers.ProcessSpec{Command: "exit 0"})
	if second.ID == in.ID {
		t.Errorf("two processes share ID %s", in.ID)
	}
}

func (s *procSuite) testPaging(t *testing.T) {
	id := s.sandbox(t)
	in := s.start(t, id, providers.ProcessSpec{Command: "head -c 3000000 /dev/urandom | tee blob.bin"})
	in = s.wait(t, id, in.ID)
	got := readProcessOutput(t, s.pp, id, in.ID, providers.Stdout, 64<<10)
	rc, _, err := s.p.ReadFile(procCtx(t), id, "blob.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want, _ := io.ReadAll(rc)
	if len(want) != 3000000 || sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("paged %d bytes, want the %d bytes of blob.bin", len(got), len(want))
	}
}

func (s *procSuite) testOutputLimit(t *testing.T) {
	id := s.sandbox(t)
	var full bytes.Buffer
	for i := 1; i <= 20000; i++ {
		fmt.Fprintln(&full, i)
	}
	const limit = 8000
	in := s.start(t, id, providers.ProcessSpec{Command: "seq 1 20000", OutputLimit: limit})
	in = s.wait(t, id, in.ID)
	if in.StdoutBytes != int64(full.Len()) {
		t.Fatalf("StdoutBytes %d, want %d (everything produced, kept or not)", in.StdoutBytes, full.Len())
	}
	ctx := procCtx(t)
	head, err := s.pp.ReadOutput(ctx, id, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 1 << 20})
	if err != nil || head.Offset != 0 || len(head.Data) == 0 || !bytes.HasPrefix(full.Bytes(), head.Data) {
		t.Fatalf("head: %d bytes at %d, %v", len(head.Data), head.Offset, err)
	}
	next := int64(len(head.Data))
	tail, err := s.pp.ReadOutput(ctx, id, in.ID, providers.OutputRequest{Stream: providers.Stdout, Offset: next, Limit: 1 << 20})
	if err != nil || tail.Skipped <= 0 || tail.Offset != next+tail.Skipped || !bytes.Equal(tail.Data, full.Bytes()[tail.Offset:]) {
		t.Fatalf("tail after the head: %d bytes at %d, skipped %d, %v", len(tail.Data), tail.Offset, tail.Skipped, err)
	}
	if kept := len(head.Data) + len(tail.Data); kept > limit || len(tail.Data) == 0 {
		t.Fatalf("kept %d+%d bytes with OutputLimit %d", len(head.Data), len(tail.Data), limit)
	}
	if _, err := s.pp.ReadOutput(ctx, id, in.ID, providers.OutputRequest{Stream: providers.Stdout, Offset: in.StdoutBytes + 1, Limit: 1}); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("reading past the end: want ErrInvalidArgument, got %v", err)
	}
	if _, err := s.pp.ReadOutput(ctx, id, in.ID, providers.OutputRequest{Stream: "both", Limit: 1}); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("unknown stream: want ErrInvalidArgument, got %v", err)
	}
}

func (s *procSuite) testStdin(t *testing.T) {
	id := s.sandbox(t)
	ctx := procCtx(t)
	in := s.start(t, id, providers.ProcessSpec{Command: "while read l; do echo got:$l; done; echo eof", Stdin: []byte("zero\n"), OpenStdin: true})
	if !in.StdinOpen {
		t.Fatalf("StdinOpen is false right after the start: %+v", in)
	}
	if err := s.pp.WriteStdin(ctx, id, in.ID, []byte("one\n"), false); err != nil {
		t.Fatal(err)
	}
	// A waiting read returns as soon as the answer comes.
	out, err := s.pp.ReadOutput(ctx, id, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 100, Wait: 10 * time.Second})
	if err != nil || !strings.HasPrefix("got:zero\ngot:one\n", string(out.Data)) || len(out.Data) == 0 || !out.Process.Running {
		t.Fatalf("waiting read: %q, %+v, %v", out.Data, out.Process, err)
	}
	big := bytes.Repeat([]byte("x"), 100000) // more than a pipe buffer, in frames
	if err := s.pp.WriteStdin(ctx, id, in.ID, append(big, '\n'), true); err != nil {
		t.Fatal(err)
	}
	done := s.wait(t, id, in.ID)
	if done.ExitCode != 0 || done.StdinOpen {
		t.Fatalf("after end-of-file: %+v", done)
	}
	if got := string(readProcessOutput(t, s.pp, id, in.ID, providers.Stdout, 1<<20)); got != "got:zero\ngot:one\ngot:"+string(big)+"\neof\n" {
		t.Fatalf("stdout: %.60q... (%d bytes)", got, len(got))
	}
	if err := s.pp.WriteStdin(ctx, id, in.ID, []byte("late\n"), false); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("writing after exit: want ErrInvalidArgument, got %v", err)
	}
	closed := s.start(t, id, providers.ProcessSpec{Command: "cat", Stdin: []byte("only this")})
	if err := s.pp.WriteStdin(ctx, id, closed.ID, []byte("x"), false); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("writing to a process without OpenStdin: want ErrInvalidArgument, got %v", err)
	}
	if got := string(readProcessOutput(t, s.pp, id, s.wait(t, id, closed.ID).ID, providers.Stdout, 100)); got != "only this" {
		t.Errorf("initial stdin without OpenStdin: %q", got)
	}
}

func (s *procSuite) testSignal(t *testing.T) {
	id := s.sandbox(t)
	ctx := procCtx(t)
	in := s.start(t, id, providers.ProcessSpec{Command: "sleep 1000 & echo $!; wait"})
	out, err := s.pp.ReadOutput(ctx, id, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 100, Wait: 10 * time.Second})
	if err != nil || !bytes.HasSuffix(out.Data, []byte("\n")) {
		t.Fatalf("child pid: %q %v", out.Data, err)
	}
	child := strings.TrimSpace(string(out.Data))
	if err := s.pp.SignalProcess(ctx, id, in.ID, "TERM"); err != nil {
		t.Fatal(err)
	}
	if got := s.wait(t, id, in.ID); got.ExitCode != 128+15 {
		t.Errorf("exit code after TERM: %d, want 143", got.ExitCode)
	}
	// The background child got the signal too.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var o bytes.Buffer
		res, err := s.p.Exec(ctx, id, providers.ExecRequest{Command: "kill -0 " + child + " 2>/dev/null && ! grep -q '^State:.*Z' /proc/" + child + "/status 2>/dev/null", Stdout: &o})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background child %s survived TERM to the process", child)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.pp.SignalProcess(ctx, id, in.ID, "KILL"); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("signalling an exited process: want ErrInvalidArgument, got %v", err)
	}
	if err := s.pp.SignalProcess(ctx, id, in.ID, "NOPE"); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("unknown signal: want ErrInvalidArgument, got %v", err)
	}
}

func (s *procSuite) testTimeout(t *testing.T) {
	id := s.sandbox(t)
	in := s.start(t, id, providers.ProcessSpec{Command: "sleep 1000", Timeout: 300 * time.Millisecond})
	if got := s.wait(t, id, in.ID); !got.TimedOut || got.ExitCode == 0 {
		t.Fatalf("after the timeout: %+v", got)
	}
}

func (s *procSuite) testOutlives(t *testing.T) {
	id := s.sandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	// The process waits for a gate the test opens, not for a clock, so a
	// loaded machine cannot end it before the short wait below.
	in, err := s.pp.StartProcess(ctx, id, providers.ProcessSpec{Command: "while [ ! -e .outlives-gate ]; do sleep 0.1; done; rm -f .outlives-gate; echo late", OpenStdin: true})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	// A wait shorter than the process returns it running.
	if got, err := s.pp.WaitProcess(procCtx(t), id, in.ID, 50*time.Millisecond); err != nil || !got.Running {
		t.Fatalf("short wait: %+v, %v", got, err)
	}
	if res, err := s.p.Exec(procCtx(t), id, providers.ExecRequest{Command: "touch .outlives-gate"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("opening the gate: %+v, %v", res, err)
	}
	other, ok := s.newProvider(t).(providers.Processes)
	if !ok {
		t.Fatal("a second driver lacks Processes")
	}
	if got, err := other.WaitProcess(procCtx(t), id, in.ID, 30*time.Second); err != nil || got.Running || got.ExitCode != 0 {
		t.Fatalf("waiting through a second driver: %+v, %v", got, err)
	}
	if got := readProcessOutput(t, other, id, in.ID, providers.Stdout, 100); string(got) != "late\n" {
		t.Fatalf("output through a second driver: %q", got)
	}
}

func (s *procSuite) testUnknown(t *testing.T) {
	id := s.sandbox(t)
	ctx := procCtx(t)
	for _, proc := range []string{"", "999999", "../x", "a/b"} {
		if _, err := s.pp.WaitProcess(ctx, id, proc, 0); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("WaitProcess(%q): want ErrNotFound, got %v", proc, err)
		}
	}
	in := s.start(t, id, providers.ProcessSpec{Command: "sleep 1000"})
	if err := s.pp.RemoveProcess(ctx, id, in.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pp.ReadOutput(ctx, id, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 1}); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("a removed process: want ErrNotFound, got %v", err)
	}
	if _, err := s.pp.StartProcess(ctx, "no-such-sandbox", providers.ProcessSpec{Command: "true"}); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("StartProcess in an unknown sandbox: want ErrNotFound, got %v", err)
	}
}

func (s *procSuite) testDestroy(t *testing.T) {
	id := s.sandbox(t)
	s.start(t, id, providers.ProcessSpec{Command: "sleep 1000"})
	if err := s.p.Destroy(procCtx(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pp.ListProcesses(procCtx(t), id); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("ListProcesses after Destroy: want ErrNotFound, got %v", err)
	}
}

// testForeground checks the optional ProcessRunner: a quick run leaves no
// record, a long one detaches with its output whole, a large one is kept.
func (s *procSuite) testForeground(t *testing.T) {
	runner, ok := s.p.(providers.ProcessRunner)
	if !ok {
		t.Skip("driver does not implement ProcessRunner")
	}
	id := s.sandbox(t)
	run := func(t *testing.T, ctx context.Context, req providers.RunRequest) (providers.RunResult, string) {
		t.Helper()
		var out bytes.Buffer
		req.Stdout = &out
		res, err := runner.RunProcess(ctx, id, req)
		if err != nil {
			t.Fatalf("RunProcess(%q): %v", req.Command, err)
		}
		return res, out.String()
	}
	spec := func(cmd string) providers.ProcessSpec { return providers.ProcessSpec{Command: cmd} }

	t.Run("QuickLeavesNoRecord", func(t *testing.T) {
		res, out := run(t, procCtx(t), providers.RunRequest{ProcessSpec: spec("echo hi; exit 3"), Wait: 10 * time.Second, KeepAfter: 1000})
		if res.ExitCode != 3 || res.Running || res.ProcessID != "" || out != "hi\n" {
			t.Fatalf("%+v %q", res, out)
		}
		if list, _ := s.pp.ListProcesses(procCtx(t), id); len(list) != 0 {
			t.Fatalf("a quick run left records: %+v", list)
		}
	})
	t.Run("LargeOutputIsKept", func(t *testing.T) {
		res, out := run(t, procCtx(t), providers.RunRequest{ProcessSpec: spec("seq 1 5000"), Wait: 10 * time.Second, KeepAfter: 1000})
		if res.ProcessID == "" || res.Running || res.ExitCode != 0 {
			t.Fatalf("%+v", res)
		}
		if got := string(readProcessOutput(t, s.pp, id, res.ProcessID, providers.Stdout, 4096)); got != out || len(out) < 20000 {
			t.Fatalf("kept %d bytes, streamed %d", len(got), len(out))
		}
	})
	t.Run("OutlivingTheWaitDetaches", func(t *testing.T) {
		res, out := run(t, procCtx(t), providers.RunRequest{ProcessSpec: spec("echo before; sleep 0.6; echo after; exit 5"), Wait: 200 * time.Millisecond, KeepAfter: 1000})
		if !res.Running || res.ProcessID == "" || out != "before\n" {
			t.Fatalf("%+v %q", res, out)
		}
		in := s.wait(t, id, res.ProcessID)
		if in.ExitCode != 5 {
			t.Fatalf("exit code of the detached run: %+v", in)
		}
		if got := string(readProcessOutput(t, s.pp, id, res.ProcessID, providers.Stdout, 100)); got != "before\nafter\n" {
			t.Fatalf("output across the detach: %q", got)
		}
	})
	t.Run("DetachedCanBeSignalled", func(t *testing.T) {
		res, _ := run(t, procCtx(t), providers.RunRequest{ProcessSpec: spec("sleep 1000"), Wait: 100 * time.Millisecond})
		if err := s.pp.SignalProcess(procCtx(t), id, res.ProcessID, "TERM"); err != nil {
			t.Fatal(err)
		}
		if in := s.wait(t, id, res.ProcessID); in.ExitCode != 128+15 {
			t.Fatalf("%+v", in)
		}
	})
	t.Run("TimeoutInEitherPhase", func(t *testing.T) {
		res, _ := run(t, procCtx(t), providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "sleep 1000", Timeout: 200 * time.Millisecond}, Wait: 10 * time.Second})
		if !res.TimedOut || res.Running {
			t.Fatalf("in the foreground: %+v", res)
		}
		res, _ = run(t, procCtx(t), providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "sleep 1000", Timeout: 400 * time.Millisecond}, Wait: 100 * time.Millisecond})
		if in := s.wait(t, id, res.ProcessID); !in.TimedOut {
			t.Fatalf("after the detach: %+v", in)
		}
	})
	t.Run("CancelKills", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, err := runner.RunProcess(ctx, id, providers.RunRequest{ProcessSpec: spec("sleep 1000"), Wait: 30 * time.Second})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Fatalf("cancelled run: %v after %v", err, time.Since(start))
		}
	})
}
