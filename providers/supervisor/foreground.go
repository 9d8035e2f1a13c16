package supervisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// RunProcess runs a command as a process and follows it in the same exec
// (procRunScript): its output comes back in frames as it reaches the
// process's files. A command that ends before req.Wait with short output
// leaves no record, so a quick run costs one exec, like Exec; one still
// running at req.Wait is left running, its record kept.
func (s *Supervisor) RunProcess(ctx context.Context, id string, req providers.RunRequest) (providers.RunResult, error) {
	return s.runProcess(ctx, id, req, false)
}

func (s *Supervisor) runProcess(ctx context.Context, id string, req providers.RunRequest, retry bool) (providers.RunResult, error) {
	args, stdin, err := startArgs(req.ProcessSpec)
	if err != nil {
		return providers.RunResult{}, err
	}
	h := s.helper(ctx, id)
	args[2] = h.arg
	wait := max(req.Wait, 0)
	argv := append([]string{"/bin/sh", "-c", procRunScript, "mcp-sandbox-run"}, args...)
	if h.path != "" {
		// The helper runs the same script natively: one process, not dozens.
		argv = append([]string{h.path, "run"}, args...)
	}
	argv = append(argv, strconv.FormatInt(int64(wait/(10*time.Millisecond)), 10), strconv.FormatInt(max(req.KeepAfter, 0), 10))

	start := time.Now()
	fw := &frameWriter{stdout: orDiscard(req.Stdout), stderr: orDiscard(req.Stderr), started: make(chan struct{})}
	// The follower runs on its own context: a cancelled call first learns
	// the process number, so that it can remove the process, then stops it.
	// The script leaves the command running at wait; the deadline only
	// guards against a follower that never ends.
	fctx, stop := context.WithTimeout(context.WithoutCancel(ctx), wait+30*time.Second)
	defer stop()
	type ran struct {
		code   int
		errOut string
		err    error
	}
	done := make(chan ran, 1)
	go func() {
		var in io.Reader
		if stdin != nil {
			in = stdin
		}
		code, errOut, err := s.run(fctx, id, in, fw, argv...)
		done <- ran{code, errOut, err}
	}()
	var r ran
	select {
	case r = <-done:
	case <-ctx.Done():
		select {
		case <-fw.started:
		case r = <-done:
		case <-time.After(10 * time.Second):
		}
		stop()
		if proc := fw.procID(); proc != "" {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := s.RemoveProcess(kctx, id, proc); err != nil {
				s.log.Warn("a cancelled command's process could not be removed", "sandbox", id, "process", proc, "err", err)
			}
		}
		return providers.RunResult{}, ctx.Err()
	}
	res := providers.RunResult{ExecResult: providers.ExecResult{ExitCode: -1, Duration: time.Since(start)}}
	if fw.cwdErr != "" {
		return res, startError([]byte("cwd "+fw.cwdErr), req.Cwd)
	}
	if fw.startErr == "nohelper" && fw.procID() == "" && !retry {
		// The helper was removed from the sandbox: upload it again.
		s.forgetHelper(id)
		return s.runProcess(ctx, id, req, true)
	}
	if fw.startErr != "" {
		if fw.procID() == "" {
			// The sandbox cannot hold a process (no writable /tmp, no
			// mkfifo...): run it as a plain exec, which needs neither, and
			// which can only wait.
			s.log.Warn("running a command without a process record", "sandbox", id, "reason", fw.startErr)
			return s.plainRun(ctx, id, req, stdin)
		}
		return res, providers.Errorf(providers.ErrUnavailable, "run command: %s", fw.startErr)
	}
	proc := fw.procID()
	if proc == "" {
		if r.err != nil {
			return res, runErr("run command", r.err)
		}
		if r.code == 126 || r.code == 127 {
			// No usable sh, setsid or dd: the command still runs, without a
			// handle.
			s.log.Warn("running a command without a process record", "sandbox", id, "reason", strings.TrimSpace(r.errOut))
			return s.plainRun(ctx, id, req, stdin)
		}
		return res, providers.Errorf(providers.ErrUnavailable, "run command: the sandbox did not start it (exit %d): %s", r.code, strings.TrimSpace(r.errOut))
	}
	var in providers.ProcessInfo
	removed := false
	if fw.done {
		if in, err = oneRecord(fw.record.Bytes(), proc); err == nil {
			removed = bytes.HasSuffix(fw.record.Bytes(), []byte("\nremoved\n"))
		}
	}
	if !fw.done || err != nil {
		// The follower went away early: the process's own record says how
		// it is doing.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if in, err = s.WaitProcess(wctx, id, proc, 0); err != nil {
			return res, err
		}
	}
	if !in.Running {
		res.ExitCode, res.TimedOut = in.ExitCode, in.TimedOut
		if !in.EndedAt.IsZero() {
			res.Duration = in.EndedAt.Sub(in.StartedAt)
		}
	}
	res.Running = in.Running
	if !removed {
		res.ProcessID = proc
	}
	return res, nil
}

// plainRun runs a command through the driver's Exec, for sandboxes that
// cannot hold a process.
func (s *Supervisor) plainRun(ctx context.Context, id string, req providers.RunRequest, stdin *bytes.Reader) (providers.RunResult, error) {
	er := providers.ExecRequest{Command: req.Command, Cwd: req.Cwd, Env: req.Env, Timeout: req.Timeout, Stdout: req.Stdout, Stderr: req.Stderr}
	if stdin != nil {
		stdin.Seek(0, io.SeekStart)
		er.Stdin = stdin
	}
	r, err := s.r.Exec(ctx, id, er)
	return providers.RunResult{ExecResult: r}, err
}

// frameWriter decodes procRunScript's frames: output goes to stdout and
// stderr as it comes; the process number and the final record are kept.
type frameWriter struct {
	stdout, stderr io.Writer
	started        chan struct{} // closed once the process number is known

	line   []byte    // a header being read
	left   int       // bytes of the current frame still to come
	dst    io.Writer // where they go
	proc   string
	done   bool         // the record has begun
	record bytes.Buffer // the final record
	// startErr is the start's error message, when it failed; cwdErr says
	// what is wrong with the working directory.
	startErr, cwdErr string
}

func (w *frameWriter) procID() string {
	select {
	case <-w.started:
		return w.proc // written once, before started is closed
	default:
		return ""
	}
}

var errBadFrame = errors.New("unexpected output from the sandbox's process follower")

func (w *frameWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		switch {
		case w.done:
			if w.record.Len()+len(b) > maxProcScriptOutput {
				return n, errBadFrame
			}
			w.record.Write(b)
			return n, nil
		case w.left > 0:
			k := min(w.left, len(b))
			if _, err := w.dst.Write(b[:k]); err != nil {
				// A writer that fails (a closed client) loses the output;
				// the process keeps it.
				w.dst = io.Discard
			}
			w.left -= k
			b = b[k:]
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(w.line)+len(b) > 4096 {
				return n, errBadFrame
			}
			w.line = append(w.line, b...)
			return n, nil
		}
		line := string(append(w.line, b[:i]...))
		w.line = w.line[:0]
		b = b[i+1:]
		if err := w.header(line); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (w *frameWriter) header(line string) error {
	kind, rest, _ := strings.Cut(line, " ")
	switch kind {
	case "P":
		if w.proc != "" || !providers.ValidProcessID(rest) {
			return errBadFrame
		}
		w.proc = rest
		close(w.started)
	case "o", "e":
		f := strings.Fields(rest)
		if len(f) != 2 {
			return errBadFrame
		}
		k, err := strconv.Atoi(f[1])
		if err != nil || k < 0 {
			return errBadFrame
		}
		w.left, w.dst = k, w.stdout
		if kind == "e" {
			w.dst = w.stderr
		}
	case "x":
		w.done = true
		w.record.WriteString("\n")
	case "error":
		w.startErr = rest
	case "cwd":
		w.cwdErr = rest
	default:
		return errBadFrame
	}
	return nil
}
