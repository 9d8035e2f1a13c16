package tools

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

type runCommandArgs struct {
	Command        string            `json:"command" jsonschema_description:"Shell command, run with /bin/sh -c. Pipes, redirections and && work."`
	SandboxID      string            `json:"sandbox_id,omitempty" jsonschema_description:"Sandbox to run in. Omit to use the current sandbox (created on first use)."`
	Cwd            string            `json:"cwd,omitempty" jsonschema_description:"Working directory, relative to the sandbox workdir or absolute. Default: the workdir."`
	Env            map[string]string `json:"env,omitempty" jsonschema_description:"Extra environment variables for this command."`
	Stdin          string            `json:"stdin,omitempty" jsonschema_description:"Text written to the command's standard input."`
	TimeoutSeconds float64           `json:"timeout_seconds,omitempty" jsonschema:"minimum=0" jsonschema_description:"Kill the command (and everything it started) after this many seconds. Default and maximum are set by the server."`
}

// RunCommandResult is what run_command returns.
type RunCommandResult struct {
	SandboxID       string      `json:"sandbox_id"`
	ExitCode        int         `json:"exit_code" jsonschema_description:"The command's exit status; 128+N when killed by signal N; -1 when it timed out."`
	Stdout          string      `json:"stdout"`
	Stderr          string      `json:"stderr"`
	DurationMs      int64       `json:"duration_ms"`
	TimedOut        bool        `json:"timed_out" jsonschema_description:"True when the timeout killed the command."`
	StdoutTruncated *Truncation `json:"stdout_truncated,omitempty" jsonschema_description:"Present when stdout was cut: the head and tail are kept."`
	StderrTruncated *Truncation `json:"stderr_truncated,omitempty" jsonschema_description:"Present when stderr was cut: the head and tail are kept."`
	NonUTF8Output   bool        `json:"non_utf8_output,omitempty" jsonschema_description:"True when the output had bytes that are not UTF-8, shown as U+FFFD. Redirect to a file and use read_file for the exact bytes."`
}

func (h *handlers) runCommand() server.ServerTool {
	tool := newTool("run_command", "Run command",
		"Run a shell command in a sandbox and return its exit code, stdout and stderr (kept apart). "+
			"Omit sandbox_id to use the current sandbox, created on first use. "+
			fmt.Sprintf("Output is capped at %d bytes per stream: when cut, the head and the tail are kept and the result says how many bytes were dropped; ", h.lim.MaxOutputBytes)+
			"redirect large output to a file and page it with read_file. "+
			fmt.Sprintf("Commands are killed, with everything they started, after timeout_seconds (default %v, at most %v). ", h.lim.DefaultTimeout, h.lim.MaxTimeout)+
			"A non-zero exit code is a normal result, not a tool error. Each call is a fresh shell: use cwd and env (or `cd dir && ...`) rather than relying on state from an earlier call.",
		runCommandArgs{}, RunCommandResult{},
		mcp.ToolAnnotation{ReadOnlyHint: ptr(false), DestructiveHint: ptr(true), IdempotentHint: ptr(false), OpenWorldHint: ptr(true)})
	return server.ServerTool{Tool: tool, Handler: typed(h.handleRunCommand)}
}

func (h *handlers) handleRunCommand(ctx context.Context, sid string, a runCommandArgs) (*mcp.CallToolResult, error) {
	if strings.TrimSpace(a.Command) == "" {
		return nil, invalid("command is empty; pass a shell command such as \"ls -la\"")
	}
	timeout := h.lim.DefaultTimeout
	switch {
	case a.TimeoutSeconds < 0:
		return nil, invalid("timeout_seconds must be positive, got %v", a.TimeoutSeconds)
	case a.TimeoutSeconds > 0:
		timeout = time.Duration(a.TimeoutSeconds * float64(time.Second))
		if timeout > h.lim.MaxTimeout {
			return nil, invalid("timeout_seconds %v is over this server's maximum of %v seconds", a.TimeoutSeconds, h.lim.MaxTimeout.Seconds())
		}
	}
	p, id, err := h.m.Resolve(ctx, sid, a.SandboxID)
	if err != nil {
		return nil, err
	}
	stdout, stderr := newCapture(h.lim.MaxOutputBytes), newCapture(h.lim.MaxOutputBytes)
	req := providers.ExecRequest{Command: a.Command, Cwd: a.Cwd, Env: a.Env, Timeout: timeout, Stdout: stdout, Stderr: stderr}
	if a.Stdin != "" {
		if !p.Capabilities().Has(providers.CapStdin) {
			return nil, providers.Errorf(providers.ErrUnsupported, "the %s provider cannot pass stdin; write the input to a file and redirect it (cmd < file)", p.Name())
		}
		req.Stdin = strings.NewReader(a.Stdin)
	}
	res, err := p.Exec(ctx, id, req)
	if err != nil {
		return nil, err
	}
	out := RunCommandResult{SandboxID: id, ExitCode: res.ExitCode, DurationMs: res.Duration.Milliseconds(), TimedOut: res.TimedOut}
	var lossyOut, lossyErr bool
	out.Stdout, out.StdoutTruncated, lossyOut = stdout.text()
	out.Stderr, out.StderrTruncated, lossyErr = stderr.text()
	out.NonUTF8Output = lossyOut || lossyErr
	if res.TimedOut {
		out.ExitCode = -1
	}
	return result(out, renderRun(out, timeout)), nil
}

func renderRun(r RunCommandResult, timeout time.Duration) string {
	var b strings.Builder
	if r.TimedOut {
		fmt.Fprintf(&b, "Timed out after %v; the command and its children were killed.\n", timeout)
	} else {
		fmt.Fprintf(&b, "exit_code: %d (%d ms)\n", r.ExitCode, r.DurationMs)
	}
	section := func(name, s string, t *Truncation) {
		if s == "" {
			return
		}
		fmt.Fprintf(&b, "--- %s", name)
		if t != nil {
			fmt.Fprintf(&b, " (%d bytes, %d dropped from the middle)", t.TotalBytes, t.DroppedBytes)
		}
		b.WriteString(" ---\n")
		b.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			b.WriteString("\n")
		}
	}
	section("stdout", r.Stdout, r.StdoutTruncated)
	section("stderr", r.Stderr, r.StderrTruncated)
	if r.NonUTF8Output {
		b.WriteString("(output had non-UTF-8 bytes, shown as U+FFFD)\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}
