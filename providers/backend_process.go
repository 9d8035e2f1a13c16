package providers

import (
	"bytes"
	"context"
	"strings"
	"time"
)

// Signals are the signal names SignalProcess accepts, the only list there is.
var Signals = []string{"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT"}

// ParseSignal normalises a signal name ("sigterm", "SIGTERM", "TERM").
func ParseSignal(name string) (string, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	for _, s := range Signals {
		if n == s {
			return s, nil
		}
	}
	return "", Errorf(ErrInvalidArgument, "unknown signal %q; use one of %s", name, strings.Join(Signals, ", "))
}

// processes returns the driver's Processes, or the error that says it has
// none and what to do instead.
func (b *Backend) processes(id, proc string) (Processes, error) {
	if b.procs == nil {
		return nil, Errorf(ErrUnsupported,
			"the %s provider cannot run background processes; use run_command, which waits up to timeout_seconds, or start the program with `nohup cmd > log 2>&1 &` and read the log with read_file", b.Name())
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	if proc != "" && !ValidProcessID(proc) {
		return nil, ProcessNotFound(proc)
	}
	return b.procs, nil
}

// StartProcess starts a background command.
func (b *Backend) StartProcess(ctx context.Context, id string, spec ProcessSpec) (ProcessInfo, error) {
	pp, err := b.processes(id, "")
	if err != nil {
		return ProcessInfo{}, err
	}
	if err := b.checkRun(id, spec.Command, spec.Cwd, spec.Env); err != nil {
		return ProcessInfo{}, err
	}
	in, err := pp.StartProcess(ctx, id, spec)
	return in, b.err(err)
}

// WaitProcess waits up to timeout for the process to exit.
func (b *Backend) WaitProcess(ctx context.Context, id, proc string, timeout time.Duration) (ProcessInfo, error) {
	pp, err := b.processes(id, proc)
	if err != nil {
		return ProcessInfo{}, err
	}
	in, err := pp.WaitProcess(ctx, id, proc, max(timeout, 0))
	return in, b.err(err)
}

// ListProcesses describes the sandbox's processes, oldest first.
func (b *Backend) ListProcesses(ctx context.Context, id string) ([]ProcessInfo, error) {
	pp, err := b.processes(id, "")
	if err != nil {
		return nil, err
	}
	ins, err := pp.ListProcesses(ctx, id)
	return ins, b.err(err)
}

// ReadOutput reads one stream of a process from an offset.
func (b *Backend) ReadOutput(ctx context.Context, id, proc string, req OutputRequest) (Output, error) {
	pp, err := b.processes(id, proc)
	if err != nil {
		return Output{}, err
	}
	if req.Stream != Stdout && req.Stream != Stderr {
		return Output{}, Errorf(ErrInvalidArgument, "stream %q is unknown; use stdout or stderr", req.Stream)
	}
	if req.Offset < 0 || req.Limit < 1 {
		return Output{}, Errorf(ErrInvalidArgument, "offset must be at least 0 and limit at least 1, got %d and %d", req.Offset, req.Limit)
	}
	out, err := pp.ReadOutput(ctx, id, proc, req)
	return out, b.err(err)
}

// WriteStdin feeds a process started with OpenStdin.
func (b *Backend) WriteStdin(ctx context.Context, id, proc string, data []byte, closeStdin bool) error {
	pp, err := b.processes(id, proc)
	if err != nil {
		return err
	}
	return b.err(pp.WriteStdin(ctx, id, proc, data, closeStdin))
}

// SignalProcess signals the process and everything it started.
func (b *Backend) SignalProcess(ctx context.Context, id, proc, signal string) error {
	pp, err := b.processes(id, proc)
	if err != nil {
		return err
	}
	sig, err := ParseSignal(signal)
	if err != nil {
		return err
	}
	return b.err(pp.SignalProcess(ctx, id, proc, sig))
}

// RemoveProcess kills the process if it runs and forgets it.
func (b *Backend) RemoveProcess(ctx context.Context, id, proc string) error {
	pp, err := b.processes(id, proc)
	if err != nil {
		return err
	}
	return b.err(pp.RemoveProcess(ctx, id, proc))
}

// Run runs a command in the foreground for up to req.Wait and makes it a
// background process when it outlives that (see ProcessRunner). It is the
// one place that chooses how: the driver's RunProcess when it has one, else
// StartProcess followed by waits that stream its output, else Exec (which
// cannot detach: it runs until req.Timeout). Cancelling ctx before the
// command detaches kills it and everything it started.
func (b *Backend) Run(ctx context.Context, id string, req RunRequest) (RunResult, error) {
	if err := b.checkRun(id, req.Command, req.Cwd, req.Env); err != nil {
		return RunResult{}, err
	}
	switch {
	case b.runner != nil:
		res, err := b.runner.RunProcess(ctx, id, req)
		return res, b.err(err)
	case b.procs != nil:
		res, err := b.runByStart(ctx, id, req)
		return res, b.err(err)
	}
	ex := ExecRequest{Command: req.Command, Cwd: req.Cwd, Env: req.Env, Timeout: req.Timeout, Stdout: req.Stdout, Stderr: req.Stderr}
	if len(req.Stdin) > 0 {
		ex.Stdin = bytes.NewReader(req.Stdin)
	}
	res, err := b.Exec(ctx, id, ex)
	return RunResult{ExecResult: res}, err
}

// followStep is how often runByStart passes new output on.
const followStep = 100 * time.Millisecond

// runByStart is Run for drivers with Processes but no RunProcess.
func (b *Backend) runByStart(ctx context.Context, id string, req RunRequest) (RunResult, error) {
	in, err := b.procs.StartProcess(ctx, id, req.ProcessSpec)
	if err != nil {
		return RunResult{}, err
	}
	proc := in.ID
	f := follower{b: b.procs, id: id, proc: proc, stdout: req.Stdout, stderr: req.Stderr}
	deadline := deadlineAfter(req.Wait)
	for {
		step := followStep
		if !deadline.IsZero() {
			step = min(step, max(time.Until(deadline), 0))
		}
		in, err = b.procs.WaitProcess(ctx, id, proc, step)
		if ctx.Err() != nil {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			b.procs.RemoveProcess(kctx, id, proc)
			return RunResult{}, ctx.Err()
		}
		if err != nil {
			return RunResult{}, err
		}
		if err := f.catchUp(ctx, in); err != nil {
			return RunResult{}, err
		}
		if !in.Running || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			break
		}
	}
	res := RunResult{ExecResult: ExecResult{ExitCode: in.ExitCode, TimedOut: in.TimedOut}, Running: in.Running}
	end := in.EndedAt
	if in.Running {
		end = time.Now()
	}
	res.Duration = end.Sub(in.StartedAt)
	if in.Running || in.StdoutBytes > req.KeepAfter || in.StderrBytes > req.KeepAfter {
		res.ProcessID = proc
	} else {
		// Everything was passed on: the record is not needed. A failure to
		// remove it loses nothing; the sandbox's end removes it.
		b.procs.RemoveProcess(context.WithoutCancel(ctx), id, proc)
	}
	return res, nil
}

// follower passes a process's new output on to writers.
type follower struct {
	b              Processes
	id, proc       string
	stdout, stderr interface{ Write([]byte) (int, error) }
	at             [2]int64
}

func (f *follower) catchUp(ctx context.Context, in ProcessInfo) error {
	for i, s := range []struct {
		stream Stream
		total  int64
		w      interface{ Write([]byte) (int, error) }
	}{{Stdout, in.StdoutBytes, f.stdout}, {Stderr, in.StderrBytes, f.stderr}} {
		for s.w != nil && f.at[i] < s.total {
			out, err := f.b.ReadOutput(ctx, f.id, f.proc, OutputRequest{Stream: s.stream, Offset: f.at[i], Limit: 1 << 20})
			if err != nil {
				return err
			}
			if len(out.Data) == 0 && out.Offset <= f.at[i] {
				break
			}
			s.w.Write(out.Data)
			f.at[i] = out.Offset + int64(len(out.Data))
		}
	}
	return nil
}
