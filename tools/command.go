package tools

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

type runCommandArgs struct {
	Command        string  `json:"command" jsonschema_description:"Shell command, run with /bin/sh -c. Pipes, redirections and && work."`
	SandboxID      string  `json:"sandbox_id,omitempty" jsonschema_description:"Sandbox to run in. Omit to use the current sandbox (created on first use)."`
	Cwd            string  `json:"cwd,omitempty" jsonschema_description:"Working directory, relative to the sandbox workdir or absolute. Default: the workdir."`
	Env            envVars `json:"env,omitempty" jsonschema_description:"Extra environment variables for this command."`
	Stdin          string  `json:"stdin,omitempty" jsonschema_description:"Text written to the command's standard input."`
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty" jsonschema:"minimum=0" jsonschema_description:"Kill the command (and everything it started) after this many seconds. Default and maximum are set by the server."`
	WaitSeconds    float64 `json:"wait_seconds,omitempty" jsonschema:"minimum=0,maximum=50" jsonschema_description:"Return after this many seconds even if the command is still running: it keeps running in the background and the result has a process_id to follow it with process_output. At most 50, below the 60 s after which common clients give up on a call; default set by the server."`
}

// RunCommandResult is what run_command returns.
type RunCommandResult struct {
	SandboxID       string      `json:"sandbox_id"`
	ExitCode        *int        `json:"exit_code,omitempty" jsonschema_description:"The command's exit status, absent while it runs. 128+N when signal N killed it: a timeout kills with SIGKILL, so 137 with timed_out true. -1 when unknown."`
	Stdout          string      `json:"stdout"`
	Stderr          string      `json:"stderr"`
	DurationMs      int64       `json:"duration_ms"`
	TimedOut        bool        `json:"timed_out" jsonschema_description:"True when the timeout killed the command."`
	Running         bool        `json:"running,omitempty" jsonschema_description:"True when the command was still running after wait_seconds. It keeps running until it ends or kill_at: follow it with process_output, stop it with process_kill."`
	KillAt          *time.Time  `json:"kill_at,omitempty" jsonschema_description:"When the command runs on in the background: the time its timeout (timeout_seconds after it started) will kill it unless it ends first."`
	ProcessID       string      `json:"process_id,omitempty" jsonschema_description:"Handle of the command's process, present when it is still running or its output was cut: pass it to process_output to read the output from any offset."`
	StdoutBytes     int64       `json:"stdout_bytes" jsonschema_description:"Bytes written to stdout so far: process_output from this offset returns what comes next."`
	StderrBytes     int64       `json:"stderr_bytes" jsonschema_description:"Bytes written to stderr so far."`
	StdoutTruncated *Truncation `json:"stdout_truncated,omitempty" jsonschema_description:"Present when stdout was cut: the head and tail are kept."`
	StderrTruncated *Truncation `json:"stderr_truncated,omitempty" jsonschema_description:"Present when stderr was cut: the head and tail are kept."`
	NonUTF8Output   bool        `json:"non_utf8_output,omitempty" jsonschema_description:"True when the output had bytes that are not UTF-8, shown as U+FFFD. Page it with process_output (raw bytes come base64-encoded) or redirect to a file."`
	BackgroundCut   bool        `json:"background_output_cut,omitempty" jsonschema_description:"True when children the command left running (cmd &) still held its output when it exited: what they print later is not in this result. Redirect their output to a file (cmd > log 2>&1 &) or use process_start."`
}

func (h *handlers) runCommand() server.ServerTool {
	tool := newTool("run_command", "Run command",
		"Run a shell command in a sandbox and return its exit code, stdout and stderr (kept apart). "+
			"Omit sandbox_id to use the current sandbox, created on first use. "+
			fmt.Sprintf("Waits at most wait_seconds (default %s, at most 50 seconds): a command still running then keeps running in the background, and the result says running=true with a process_id for process_output and process_kill. ", durationText(min(h.lim.Wait, maxWait)))+
			"When the request has a progress token, new output is streamed in progress notifications. "+
			fmt.Sprintf("Output is capped at %s per stream: when cut, the head and the tail are kept, and the result says how many bytes were dropped and gives a process_id to page the full output with process_output. ", sizeText(int64(h.lim.MaxOutputBytes)))+
			fmt.Sprintf("Commands are killed, with everything they started, timeout_seconds after they started (default %s, at most %s), even once in the background: the result's kill_at says when; use process_start for a server that must stay up. "+
				"Cancelling the call, or the client going away, does not stop the command: it runs on, listed by process_list (with its result once it ends), until it ends or its timeout; stop it with process_kill. ", durationText(h.lim.DefaultTimeout), durationText(h.lim.MaxTimeout))+
			"A non-zero exit code is a normal result, not a tool error. Each call is a fresh shell: use cwd and env (or `cd dir && ...`) rather than relying on state from an earlier call.",
		runCommandArgs{}, RunCommandResult{},
		behaviour{Destructive: true, OpenWorld: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, h.handleRunCommand)}
}

// killedByTimeout is the exit code of a command its timeout killed: every
// driver kills with SIGKILL, and some cannot tell the status (-1).
const killedByTimeout = 128 + 9

// exitCode is the one convention run_command and the process tools share:
// none while running, 128+N after signal N, 137 after a timeout.
func exitCode(running, timedOut bool, code int) *int {
	switch {
	case running:
		return nil
	case timedOut:
		return ptr(killedByTimeout)
	}
	return ptr(code)
}

// checkCommand rejects a command no provider can start: an empty one, or
// one with a NUL byte (a process's arguments are C strings, so exec fails
// with a bare "invalid argument" that reads like a fault of the sandbox).
func checkCommand(cmd, example string) error {
	if strings.TrimSpace(cmd) == "" {
		return invalid("command is empty; pass a shell command such as %q", example)
	}
	if i := strings.IndexByte(cmd, 0); i >= 0 {
		return invalid("command has a NUL byte at offset %d, which no command line can carry; remove it, write it with printf '\\0' inside the command, or put the data in a file with write_file", i)
	}
	return nil
}

func (h *handlers) handleRunCommand(ctx context.Context, sid string, a runCommandArgs) (*mcp.CallToolResult, error) {
	if err := checkCommand(a.Command, "ls -la"); err != nil {
		return nil, err
	}
	timeout, err := seconds("timeout_seconds", a.TimeoutSeconds, h.lim.DefaultTimeout, h.lim.MaxTimeout)
	if err != nil {
		return nil, err
	}
	wait, err := seconds("wait_seconds", a.WaitSeconds, min(h.lim.Wait, maxWait), maxWait)
	if err != nil {
		return nil, err
	}
	p, id, err := h.m.Resolve(ctx, sid, a.SandboxID)
	if err != nil {
		return nil, err
	}
	return h.run(ctx, sid, p, id, a, timeout, wait)
}

// run runs the command in the foreground; the provider makes it a process
// only when it outlives the wait or its output is cut (providers.Backend.Run
// chooses how).
func (h *handlers) run(ctx context.Context, sid string, p *providers.Backend, id string, a runCommandArgs, timeout, wait time.Duration) (*mcp.CallToolResult, error) {
	stdout, stderr := newCapture(h.lim.MaxOutputBytes), newCapture(h.lim.MaxOutputBytes)
	req := providers.RunRequest{
		ProcessSpec: providers.ProcessSpec{Command: a.Command, Cwd: a.Cwd, Env: a.Env, Stdin: []byte(a.Stdin),
			Timeout: timeout, OutputLimit: h.lim.MaxProcessOutputBytes},
		Wait: wait, KeepAfter: int64(h.lim.MaxOutputBytes), Stdout: stdout, Stderr: stderr,
	}
	if pr := newProgress(ctx); pr != nil {
		sw := newStreamWriter(pr)
		defer sw.Close()
		req.Stdout, req.Stderr = io.MultiWriter(stdout, sw), io.MultiWriter(stderr, sw)
	}
	// The command must not die with the call: a client's own timeout
	// cancels a call as surely as a user does, and killing would lose the
	// work. It runs on, listed by process_list, and process_kill stops it.
	f := &flight{sid: sid, sandboxID: id, command: a.Command, started: time.Now(), stdout: stdout, stderr: stderr}
	h.flights.start(f)
	type outcome struct {
		res providers.RunResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := p.Run(context.WithoutCancel(ctx), id, req)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		h.flights.end(f)
		if o.err != nil {
			return nil, o.err
		}
		return h.runResult(id, o.res, stdout, stderr, timeout, wait), nil
	case <-ctx.Done():
	}
	h.m.Logger().Info("run_command cancelled; the command runs on, listed by process_list", "session", sid, "sandbox", id, "reason", context.Cause(ctx))
	go func() {
		o := <-done
		h.flights.end(f)
		if o.err == nil && o.res.ProcessID == "" {
			res := h.runResult(id, o.res, stdout, stderr, timeout, wait).StructuredContent.(RunCommandResult)
			h.flights.keep(sid, AbandonedRun{Command: a.Command, RunCommandResult: res, timeout: timeout})
		}
	}()
	return nil, ctx.Err()
}

// runResult words how a run ended.
func (h *handlers) runResult(id string, res providers.RunResult, stdout, stderr *capture, timeout, wait time.Duration) *mcp.CallToolResult {
	out := RunCommandResult{SandboxID: id, ExitCode: exitCode(res.Running, res.TimedOut, res.ExitCode), DurationMs: res.Duration.Milliseconds(), TimedOut: res.TimedOut,
		Running: res.Running, StdoutBytes: stdout.total, StderrBytes: stderr.total, BackgroundCut: res.OutputCut}
	if res.ProcessID != "" {
		out.ProcessID = processHandle(id, res.ProcessID)
	}
	if res.Running {
		out.KillAt = ptr(time.Now().Add(timeout - res.Duration).UTC().Truncate(time.Second))
	}
	var lossyOut, lossyErr bool
	out.Stdout, out.StdoutTruncated, lossyOut = stdout.text()
	out.Stderr, out.StderrTruncated, lossyErr = stderr.text()
	out.NonUTF8Output = lossyOut || lossyErr
	return result(out, renderRun(out, timeout, wait, h.waitHint(30*time.Second)))
}

func renderRun(r RunCommandResult, timeout, wait time.Duration, followWait string) string {
	var b strings.Builder
	switch {
	case r.Running:
		fmt.Fprintf(&b, "Still running after %s; it continues in the background as process %s until it ends, or until %s when its timeout (%s after it started) kills it. "+
			"For a command that must run longer, pass a larger timeout_seconds, or use process_start.\n",
			durationText(wait), r.ProcessID, r.KillAt.Format("15:04:05 MST"), durationText(timeout))
		fmt.Fprintf(&b, "Follow it with process_output {process_id: %q, byte_offset: %d, wait_seconds: %s}; stop it with process_kill.\n", r.ProcessID, r.StdoutBytes, followWait)
	case r.TimedOut:
		fmt.Fprintf(&b, "Timed out after %s; the command and its children were killed.\n", durationText(timeout))
	default:
		fmt.Fprintf(&b, "exit_code: %d (%d ms)\n", *r.ExitCode, r.DurationMs)
	}
	section := func(name, s string, t *Truncation) {
		if s == "" {
			return
		}
		fmt.Fprintf(&b, "--- %s", name)
		if t != nil {
			fmt.Fprintf(&b, " (%d bytes, %d dropped from the middle", t.TotalBytes, t.DroppedBytes)
			if r.ProcessID != "" {
				fmt.Fprintf(&b, "; read them with process_output {process_id: %q, stream: %q, byte_offset: %d}", r.ProcessID, name, t.DroppedOffset)
			}
			b.WriteString(")")
		}
		b.WriteString(" ---\n")
		b.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			b.WriteString("\n")
		}
	}
	section("stdout", r.Stdout, r.StdoutTruncated)
	section("stderr", r.Stderr, r.StderrTruncated)
	if r.BackgroundCut {
		b.WriteString("(children the command left running still held its output; what they print later is not shown: redirect it to a file, cmd > log 2>&1 &, or use process_start)\n")
	}
	if r.NonUTF8Output {
		b.WriteString("(output had non-UTF-8 bytes, shown as U+FFFD")
		if r.ProcessID != "" {
			fmt.Fprintf(&b, "; process_output {process_id: %q} returns the exact bytes", r.ProcessID)
		}
		b.WriteString(")\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}
