package tools

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// A process handle is "<sandbox_id>:<process>": resolving its sandbox goes
// through the session, so another session's handle reads as not found.
func processHandle(sandboxID, proc string) string { return sandboxID + ":" + proc }

// resolveProcess checks the handle and the session's ownership of its sandbox.
func (h *handlers) resolveProcess(ctx context.Context, sid, handle string) (*providers.Backend, string, string, error) {
	i := strings.LastIndexByte(handle, ':')
	if i <= 0 || i == len(handle)-1 {
		return nil, "", "", invalid("process_id %q is not a process handle; pass a process_id returned by run_command, process_start or process_list (it looks like <sandbox_id>:<number>)", handle)
	}
	p, id, err := h.m.Resolve(ctx, sid, handle[:i])
	if errors.Is(err, providers.ErrNotFound) {
		return nil, "", "", processNotFound(handle)
	}
	if err != nil {
		return nil, "", "", err
	}
	return p, id, handle[i+1:], nil
}

func processNotFound(handle string) error {
	return providers.Errorf(providers.ErrNotFound, "process %q not found in this session; call process_list to see yours", handle)
}

// notFoundAs rewords a driver's not-found so it names the handle.
func notFoundAs(err error, handle string) error {
	if errors.Is(err, providers.ErrNotFound) {
		return processNotFound(handle)
	}
	return err
}

// ProcessInfo describes a process in results.
type ProcessInfo struct {
	ProcessID   string     `json:"process_id" jsonschema_description:"Handle to pass to process_output, process_write_stdin and process_kill."`
	SandboxID   string     `json:"sandbox_id"`
	Command     string     `json:"command"`
	Running     bool       `json:"running"`
	ExitCode    *int       `json:"exit_code,omitempty" jsonschema_description:"Exit status, absent while it runs. 128+N when signal N killed it: a timeout kills with SIGKILL, so 137 with timed_out true. -1 when unknown."`
	TimedOut    bool       `json:"timed_out,omitempty" jsonschema_description:"True when timeout_seconds killed it."`
	StartedAt   time.Time  `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
	StdoutBytes int64      `json:"stdout_bytes" jsonschema_description:"Bytes written to stdout so far."`
	StderrBytes int64      `json:"stderr_bytes" jsonschema_description:"Bytes written to stderr so far."`
	StdinOpen   bool       `json:"stdin_open" jsonschema_description:"True while process_write_stdin can send it input."`
}

func processInfo(sandboxID string, in providers.ProcessInfo) ProcessInfo {
	out := ProcessInfo{ProcessID: processHandle(sandboxID, in.ID), SandboxID: sandboxID, Command: in.Command, Running: in.Running,
		TimedOut: in.TimedOut, StartedAt: in.StartedAt, StdoutBytes: in.StdoutBytes, StderrBytes: in.StderrBytes, StdinOpen: in.StdinOpen}
	out.ExitCode = exitCode(in.Running, in.TimedOut, in.ExitCode)
	if !in.Running {
		if !in.EndedAt.IsZero() {
			out.EndedAt = ptr(in.EndedAt)
		}
	}
	return out
}

// state says what became of the process, as a sentence's predicate.
func (pi ProcessInfo) state() string {
	switch {
	case pi.Running:
		return "it is still running"
	case pi.TimedOut:
		return "its timeout killed it"
	}
	return fmt.Sprintf("it exited with status %d", *pi.ExitCode)
}

func (pi ProcessInfo) status() string {
	switch {
	case pi.Running:
		return "running"
	case pi.TimedOut:
		return "timed out"
	}
	return fmt.Sprintf("exited %d", *pi.ExitCode)
}

type processStartArgs struct {
	Command        string  `json:"command" jsonschema_description:"Shell command, run with /bin/sh -c, e.g. a dev server or a watcher."`
	SandboxID      string  `json:"sandbox_id,omitempty" jsonschema_description:"Sandbox to run in. Omit to use the current sandbox (created on first use)."`
	Cwd            string  `json:"cwd,omitempty" jsonschema_description:"Working directory, relative to the sandbox workdir or absolute. Default: the workdir."`
	Env            envVars `json:"env,omitempty" jsonschema_description:"Extra environment variables for this process."`
	Stdin          string  `json:"stdin,omitempty" jsonschema_description:"Text written to its standard input first."`
	KeepStdinOpen  bool    `json:"keep_stdin_open,omitempty" jsonschema_description:"Keep standard input open for process_write_stdin (for REPLs and interactive programs). Otherwise it reads end-of-file after stdin."`
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty" jsonschema:"minimum=0" jsonschema_description:"Kill it (and everything it started) after this many seconds. Default: it runs until process_kill or until the sandbox is destroyed."`
}

func (h *handlers) processStart() server.ServerTool {
	tool := newTool("process_start", "Start background process",
		"Start a command in the background (a dev server, a watcher, a long build) and return at once with a process_id. "+
			fmt.Sprintf("Its output is kept on disk for process_output (up to %s per stream: the head and the latest tail), ", sizeText(h.lim.MaxProcessOutputBytes))+
			"its exit status stays readable after it exits, and it ends when the sandbox is destroyed. "+
			"For a command you want the result of, use run_command: it also moves to the background when it runs long.",
		processStartArgs{}, ProcessInfo{},
		behaviour{Destructive: true, OpenWorld: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a processStartArgs) (*mcp.CallToolResult, error) {
		if err := checkCommand(a.Command, "python3 -m http.server 8000"); err != nil {
			return nil, err
		}
		timeout, err := seconds("timeout_seconds", a.TimeoutSeconds, 0, h.lim.MaxTimeout)
		if err != nil {
			return nil, err
		}
		p, id, err := h.m.Resolve(ctx, sid, a.SandboxID)
		if err != nil {
			return nil, err
		}
		in, err := p.StartProcess(ctx, id, providers.ProcessSpec{
			Command: a.Command, Cwd: a.Cwd, Env: a.Env, Stdin: []byte(a.Stdin), OpenStdin: a.KeepStdinOpen,
			Timeout: timeout, OutputLimit: h.lim.MaxProcessOutputBytes,
		})
		if err != nil {
			return nil, err
		}
		out := processInfo(id, in)
		return result(out, fmt.Sprintf("Started process %s (%s). Read its output with process_output {process_id: %q, wait_seconds: %s}.", out.ProcessID, out.status(), out.ProcessID, h.waitHint(5*time.Second))), nil
	})}
}

type processListArgs struct {
	SandboxID string `json:"sandbox_id,omitempty" jsonschema_description:"List only this sandbox's processes. Omit for all of this session's sandboxes."`
}

type processListResult struct {
	Processes  []ProcessInfo   `json:"processes"`
	Foreground []ForegroundRun `json:"foreground" jsonschema_description:"run_command calls whose command still runs in the foreground: each becomes a process (with a process_id) if it outlives its wait."`
	Abandoned  []AbandonedRun  `json:"abandoned" jsonschema_description:"Results of run_command calls that were cancelled, or whose client went away, and whose command ended before its wait: the result that call would have returned."`
}

func (h *handlers) processList() server.ServerTool {
	tool := newTool("process_list", "List processes",
		"List this session's background processes, oldest first: those started with process_start and run_command calls that outlived their wait or had their output cut. "+
			"Finished ones stay listed, with their exit status, until pruned or their sandbox is destroyed. "+
			fmt.Sprintf("Also lists run_command calls still running in the foreground (foreground), and the results of run_command calls that were cancelled or abandoned and ended before becoming processes (abandoned; the latest %d in all).", maxAbandoned),
		processListArgs{}, processListResult{},
		behaviour{ReadOnly: true, Idempotent: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a processListArgs) (*mcp.CallToolResult, error) {
		var sandboxes []string
		if a.SandboxID != "" {
			if _, _, err := h.m.Resolve(ctx, sid, a.SandboxID); err != nil {
				return nil, err
			}
			sandboxes = append(sandboxes, a.SandboxID)
		} else {
			sbs, _, err := h.m.List(ctx, sid)
			if err != nil {
				return nil, err
			}
			for _, sb := range sbs {
				sandboxes = append(sandboxes, sb.ID)
			}
		}
		out := processListResult{Processes: []ProcessInfo{}}
		var b strings.Builder
		for _, sb := range sandboxes {
			p, id, err := h.m.Resolve(ctx, sid, sb)
			if err != nil {
				continue // destroyed meanwhile
			}
			if !p.HasProcesses() {
				continue
			}
			infos, err := p.ListProcesses(ctx, id)
			if err != nil {
				return nil, err
			}
			for _, in := range infos {
				pi := processInfo(id, in)
				out.Processes = append(out.Processes, pi)
				fmt.Fprintf(&b, "%s  %-10s %s\n", pi.ProcessID, pi.status(), printable(pi.Command))
			}
		}
		out.Foreground, out.Abandoned = h.flights.list(sid, func(sb string) bool { return slices.Contains(sandboxes, sb) })
		for _, f := range out.Foreground {
			fmt.Fprintf(&b, "(run_command in the foreground since %s, %s)  %s\n", f.StartedAt.UTC().Format("15:04:05"), durationText(time.Since(f.StartedAt).Truncate(time.Second)), f.Command)
		}
		for _, r := range out.Abandoned {
			fmt.Fprintf(&b, "(run_command whose call was abandoned; ended, exit_code %d)  %s\n", *r.ExitCode, r.Command)
			b.WriteString(renderRun(r.RunCommandResult, r.timeout, 0, "") + "\n")
		}
		if len(out.Processes)+len(out.Foreground)+len(out.Abandoned) == 0 {
			b.WriteString("No processes.")
		}
		return result(out, strings.TrimSuffix(b.String(), "\n")), nil
	})}
}

type processOutputArgs struct {
	ProcessID   string  `json:"process_id" jsonschema_description:"The process, as returned by run_command, process_start or process_list."`
	Stream      string  `json:"stream,omitempty" jsonschema:"enum=stdout,enum=stderr" jsonschema_description:"Which stream to read. Default stdout."`
	ByteOffset  int64   `json:"byte_offset,omitempty" jsonschema:"minimum=0,maximum=9007199254740991" jsonschema_description:"Byte (not line) offset in the stream to read from, 0-based. Default 0; pass next_byte_offset of the previous read to go on."`
	Limit       int     `json:"limit,omitempty" jsonschema:"minimum=1,maximum=2147483647" jsonschema_description:"Most bytes to return. Default and maximum are set by the server (see the tool description)."`
	WaitSeconds float64 `json:"wait_seconds,omitempty" jsonschema:"minimum=0,maximum=50" jsonschema_description:"When nothing is available at offset yet and the process runs, wait up to this many seconds for new output or the exit. Default 0; at most 50, or less when the server says so (see the tool description)."`
}

// ProcessOutputResult is one page of a process's output.
type ProcessOutputResult struct {
	ProcessID    string      `json:"process_id"`
	Stream       string      `json:"stream"`
	Offset       int64       `json:"byte_offset" jsonschema_description:"Byte offset of the first byte of data."`
	NextOffset   int64       `json:"next_byte_offset" jsonschema_description:"byte_offset to read next."`
	TotalBytes   int64       `json:"total_bytes" jsonschema_description:"Bytes the stream has produced so far."`
	SkippedBytes int64       `json:"skipped_bytes,omitempty" jsonschema_description:"Bytes before offset that were no longer kept (the middle of an overlong stream)."`
	Encoding     string      `json:"encoding" jsonschema:"enum=utf-8,enum=base64" jsonschema_description:"utf-8: data is text. base64: the bytes are not UTF-8 and data is their base64 encoding."`
	Data         string      `json:"data"`
	EOF          bool        `json:"eof" jsonschema_description:"True when the process has exited and everything was read."`
	Process      ProcessInfo `json:"process"`
}

func (h *handlers) processOutput() server.ServerTool {
	tool := newTool("process_output", "Read process output",
		"Read a process's stdout or stderr from a byte offset: page through output that run_command cut, or follow a running process "+
			"(pass next_byte_offset back as byte_offset, with wait_seconds to wait for more). "+
			fmt.Sprintf("Returns up to limit bytes per call (default %d, at most %d, that is %s); wait_seconds is at most %s. ", min(h.lim.MaxOutputBytes, h.lim.MaxReturnBytes), h.lim.MaxReturnBytes, sizeText(int64(h.lim.MaxReturnBytes)), durationText(h.processWait()))+
			"eof is true once the process has exited and all its output was read; process.exit_code is then its exit status.",
		processOutputArgs{}, ProcessOutputResult{},
		behaviour{ReadOnly: true, Idempotent: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, h.handleProcessOutput)}
}

func (h *handlers) handleProcessOutput(ctx context.Context, sid string, a processOutputArgs) (*mcp.CallToolResult, error) {
	stream := providers.Stream(a.Stream)
	switch stream {
	case "":
		stream = providers.Stdout
	case providers.Stdout, providers.Stderr:
	default:
		return nil, invalid("stream must be \"stdout\" or \"stderr\", not %q", a.Stream)
	}
	limit := min(h.lim.MaxOutputBytes, h.lim.MaxReturnBytes)
	if a.Limit > 0 {
		limit = min(a.Limit, h.lim.MaxReturnBytes)
	}
	wait, err := seconds("wait_seconds", a.WaitSeconds, 0, h.processWait())
	if err != nil {
		return nil, err
	}
	pp, id, proc, err := h.resolveProcess(ctx, sid, a.ProcessID)
	if err != nil {
		return nil, err
	}
	o, err := pp.ReadOutput(ctx, id, proc, providers.OutputRequest{Stream: stream, Offset: a.ByteOffset, Limit: limit, Wait: wait})
	if err != nil {
		return nil, notFoundAs(err, a.ProcessID)
	}
	out := ProcessOutputResult{ProcessID: a.ProcessID, Stream: string(stream), Offset: o.Offset, TotalBytes: o.Total,
		SkippedBytes: o.Skipped, Process: processInfo(id, o.Process)}
	data := o.Data
	end := o.Offset + int64(len(data)) // at the end, a cut rune is not waiting for the rest
	if o.Process.Running || end < o.Total {
		if t := trimIncompleteEnd(data); len(t) > 0 {
			data = t
		}
	}
	if utf8.Valid(data) {
		out.Encoding, out.Data = "utf-8", string(data)
	} else {
		data = o.Data
		out.Encoding, out.Data = "base64", base64.StdEncoding.EncodeToString(data)
	}
	out.NextOffset = o.Offset + int64(len(data))
	out.EOF = !o.Process.Running && out.NextOffset >= o.Total

	var b strings.Builder
	if out.SkippedBytes > 0 {
		fmt.Fprintf(&b, "[%d bytes before offset %d were dropped: only the head and tail of overlong output are kept]\n", out.SkippedBytes, out.Offset)
	}
	b.WriteString(out.Data)
	if out.Encoding == "base64" {
		b.WriteString("\n[the bytes are not UTF-8; data above is base64]")
	}
	switch {
	case out.EOF:
		fmt.Fprintf(&b, "\n[end of %s; process %s]", stream, out.Process.status())
	case out.Process.Running && out.NextOffset >= o.Total:
		fmt.Fprintf(&b, "\n[no more %s yet; process running. Read on with byte_offset=%d, wait_seconds to wait]", stream, out.NextOffset)
	default:
		fmt.Fprintf(&b, "\n[bytes %d-%d of %d; read on with byte_offset=%d]", out.Offset, out.NextOffset, out.TotalBytes, out.NextOffset)
	}
	return result(out, b.String()), nil
}

type processKillArgs struct {
	ProcessID string `json:"process_id" jsonschema_description:"The process to signal."`
	Signal    string `json:"signal,omitempty" jsonschema:"enum=TERM,enum=KILL,enum=INT,enum=HUP,enum=QUIT,enum=USR1,enum=USR2,enum=STOP,enum=CONT" jsonschema_description:"Signal to send. Default TERM; KILL cannot be caught."`
}

func (h *handlers) processKill() server.ServerTool {
	tool := newTool("process_kill", "Kill process",
		"Send a signal (default TERM) to a background process and everything it started, then report its state: "+
			"running=false with exit_code 128+N once signal N ended it. If TERM does not stop it, send KILL.",
		processKillArgs{}, ProcessInfo{},
		behaviour{Destructive: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a processKillArgs) (*mcp.CallToolResult, error) {
		sig := a.Signal
		if sig == "" {
			sig = "TERM"
		}
		pp, id, proc, err := h.resolveProcess(ctx, sid, a.ProcessID)
		if err != nil {
			return nil, err
		}
		if err := pp.SignalProcess(ctx, id, proc, sig); err != nil {
			return nil, notFoundAs(err, a.ProcessID)
		}
		wait := 2 * time.Second
		if s := strings.ToUpper(strings.TrimPrefix(strings.ToUpper(sig), "SIG")); s == "STOP" || s == "CONT" || s == "USR1" || s == "USR2" || s == "HUP" {
			wait = 0 // not meant to end it
		}
		in, err := pp.WaitProcess(ctx, id, proc, wait)
		if err != nil {
			return nil, notFoundAs(err, a.ProcessID)
		}
		out := processInfo(id, in)
		return result(out, fmt.Sprintf("Sent %s to process %s; %s.", strings.ToUpper(sig), a.ProcessID, out.state())), nil
	})}
}
