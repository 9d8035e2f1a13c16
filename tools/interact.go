package tools

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

type processWriteStdinArgs struct {
	ProcessID    string  `json:"process_id" jsonschema_description:"A process started with process_start and keep_stdin_open."`
	Data         string  `json:"data,omitempty" jsonschema_description:"Text to send; include the trailing newline a line-reading program needs."`
	Close        bool    `json:"close,omitempty" jsonschema_description:"Send end-of-file after data (closes its standard input)."`
	WaitFor      string  `json:"wait_for,omitempty" jsonschema_description:"Regular expression (Go RE2 syntax) to wait for in the output that follows, stdout or stderr: a prompt such as '>>> $' or 'Password: $'. Return as soon as it matches."`
	QuietSeconds float64 `json:"quiet_seconds,omitempty" jsonschema:"minimum=0,maximum=50" jsonschema_description:"Return once the process has printed nothing for this many seconds after some output (or after the write, when none comes). Default 0.5 when waiting."`
	WaitSeconds  float64 `json:"wait_seconds,omitempty" jsonschema:"minimum=0,maximum=50" jsonschema_description:"Wait for the output that follows the write, up to this many seconds: until wait_for matches, a quiet period or the exit. Default 0 (return at once) unless wait_for or quiet_seconds is set; at most 50, or less when the server says so."`
}

// ProcessStdinResult is the process's state after a write, with the output
// that followed when the call waited for it.
type ProcessStdinResult struct {
	ProcessInfo
	Stdout       string `json:"stdout,omitempty" jsonschema_description:"stdout printed after the write, when the call waited."`
	Stderr       string `json:"stderr,omitempty" jsonschema_description:"stderr printed after the write, when the call waited (many REPLs print their prompt there)."`
	StdoutOffset int64  `json:"stdout_offset" jsonschema_description:"byte_offset of stdout where that output starts: process_output from stdout_offset plus the length of stdout reads on."`
	StderrOffset int64  `json:"stderr_offset" jsonschema_description:"byte_offset of stderr where that output starts."`
	Cut          bool   `json:"output_cut,omitempty" jsonschema_description:"True when more followed than one call returns: read the rest with process_output."`
	StoppedBy    string `json:"stopped_by,omitempty" jsonschema:"enum=pattern,enum=quiet,enum=exit,enum=wait_seconds" jsonschema_description:"Why the wait ended: wait_for matched, the quiet period passed, the process exited, or wait_seconds ran out."`
}

func (h *handlers) processWriteStdin() server.ServerTool {
	tool := newTool("process_write_stdin", "Write to process stdin",
		"Send text to the standard input of a background process started with keep_stdin_open (a REPL, an interactive installer). "+
			"close=true then sends end-of-file. One interactive step in one call: with wait_for (a pattern such as a prompt), quiet_seconds or wait_seconds, "+
			fmt.Sprintf("it waits for the output that follows (at most %s) and returns it, stdout and stderr apart. ", durationText(h.processWait()))+
			"Without them it returns at once; read the response with process_output.",
		processWriteStdinArgs{}, ProcessStdinResult{},
		behaviour{Destructive: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, h.handleWriteStdin)}
}

func (h *handlers) handleWriteStdin(ctx context.Context, sid string, a processWriteStdinArgs) (*mcp.CallToolResult, error) {
	if a.Data == "" && !a.Close {
		return nil, invalid("nothing to send: pass data, close=true, or both")
	}
	if len(a.Data) > h.lim.MaxWriteBytes {
		return nil, invalid("data is %s, over the %s limit; send it in parts", sizeText(int64(len(a.Data))), sizeText(int64(h.lim.MaxWriteBytes)))
	}
	var pattern *regexp.Regexp
	if a.WaitFor != "" {
		var err error
		if pattern, err = regexp.Compile(a.WaitFor); err != nil {
			return nil, invalid("wait_for is not a valid regular expression (%v); escape special characters such as ( [ . * with a backslash", err)
		}
	}
	wait, err := seconds("wait_seconds", a.WaitSeconds, 0, h.processWait())
	if err != nil {
		return nil, err
	}
	quiet, err := seconds("quiet_seconds", a.QuietSeconds, 0, h.processWait())
	if err != nil {
		return nil, err
	}
	waiting := wait > 0 || quiet > 0 || pattern != nil
	if waiting {
		if wait == 0 {
			wait = h.processWait()
		}
		if quiet == 0 && pattern == nil {
			quiet = 500 * time.Millisecond
		}
	}
	pp, id, proc, err := h.resolveProcess(ctx, sid, a.ProcessID)
	if err != nil {
		return nil, err
	}
	before, err := pp.WaitProcess(ctx, id, proc, 0)
	if err != nil {
		return nil, notFoundAs(err, a.ProcessID)
	}
	if err := pp.WriteStdin(ctx, id, proc, []byte(a.Data), a.Close); err != nil {
		return nil, notFoundAs(err, a.ProcessID)
	}
	st := &step{pp: pp, id: id, proc: proc, budget: h.lim.MaxReturnBytes, at: [2]int64{before.StdoutBytes, before.StderrBytes}}
	out := ProcessStdinResult{StdoutOffset: before.StdoutBytes, StderrOffset: before.StderrBytes}
	in := before
	if waiting {
		in, out.StoppedBy, err = st.wait(ctx, pattern, quiet, wait)
		if err != nil {
			return nil, notFoundAs(err, a.ProcessID)
		}
		out.Stdout, _ = toValidLossy(st.got[0])
		out.Stderr, _ = toValidLossy(st.got[1])
		out.Cut = st.cut
	} else if in, err = pp.WaitProcess(ctx, id, proc, 0); err != nil {
		return nil, notFoundAs(err, a.ProcessID)
	}
	out.ProcessInfo = processInfo(id, in)

	var b strings.Builder
	fmt.Fprintf(&b, "Sent %s to process %s", sizeText(int64(len(a.Data))), a.ProcessID)
	if a.Close {
		b.WriteString(" and closed its standard input")
	}
	b.WriteString(".")
	if waiting {
		fmt.Fprintf(&b, " Waited until %s; %s.", stoppedText[out.StoppedBy], out.state())
		for _, s := range []struct{ name, text string }{{"stdout", out.Stdout}, {"stderr", out.Stderr}} {
			if s.text != "" {
				fmt.Fprintf(&b, "\n--- %s ---\n%s", s.name, strings.TrimSuffix(s.text, "\n"))
			}
		}
		if out.Cut {
			fmt.Fprintf(&b, "\n(more output followed; read it with process_output {process_id: %q, byte_offset: %d})", a.ProcessID, out.StdoutOffset+int64(len(st.got[0])))
		}
	}
	return result(out, b.String()), nil
}

var stoppedText = map[string]string{
	"pattern": "wait_for matched", "quiet": "the output went quiet", "exit": "the process exited", "wait_seconds": "wait_seconds ran out",
}

// interactStep is how often a waiting write looks for new output.
const interactStep = 50 * time.Millisecond

// step collects the output that follows a write, within a byte budget.
type step struct {
	pp       *providers.Backend
	id, proc string
	budget   int
	at       [2]int64  // next offset to read, per stream
	got      [2][]byte // what was read
	cut      bool
}

// patternSettle is how long a matched pattern waits for the other stream.
const patternSettle = 100 * time.Millisecond

// wait reads new output until pattern matches it, quiet passes without
// any, the process exits (and its output is read), or limit passes.
func (s *step) wait(ctx context.Context, pattern *regexp.Regexp, quiet, limit time.Duration) (providers.ProcessInfo, string, error) {
	deadline := time.Now().Add(limit)
	lastOutput := time.Now()
	for {
		in, err := s.pp.WaitProcess(ctx, s.id, s.proc, min(interactStep, max(time.Until(deadline), 0)))
		if err != nil {
			return in, "", err
		}
		grew, err := s.read(ctx, in)
		if err != nil {
			return in, "", err
		}
		if grew {
			lastOutput = time.Now()
		}
		switch {
		case pattern != nil && (pattern.Match(s.got[0]) || pattern.Match(s.got[1])):
			// Each stream reaches its log through its own copier, so a
			// prompt written after the answer (on the other stream) can be
			// read first: let the other stream catch up before answering.
			select {
			case <-ctx.Done():
				return in, "", ctx.Err()
			case <-time.After(patternSettle):
			}
			if in, err = s.pp.WaitProcess(ctx, s.id, s.proc, 0); err != nil {
				return in, "", err
			}
			if _, err := s.read(ctx, in); err != nil {
				return in, "", err
			}
			return in, "pattern", nil
		case !in.Running:
			return in, "exit", nil
		case quiet > 0 && time.Since(lastOutput) >= quiet:
			return in, "quiet", nil
		case !time.Now().Before(deadline) || s.cut:
			return in, "wait_seconds", nil
		}
	}
}

// read appends what each stream gained, up to the budget.
func (s *step) read(ctx context.Context, in providers.ProcessInfo) (bool, error) {
	grew := false
	for i, st := range []struct {
		stream providers.Stream
		total  int64
	}{{providers.Stdout, in.StdoutBytes}, {providers.Stderr, in.StderrBytes}} {
		for s.at[i] < st.total {
			room := s.budget - len(s.got[0]) - len(s.got[1])
			if room <= 0 {
				s.cut = true
				break
			}
			o, err := s.pp.ReadOutput(ctx, s.id, s.proc, providers.OutputRequest{Stream: st.stream, Offset: s.at[i], Limit: room})
			if err != nil {
				return grew, err
			}
			if len(o.Data) == 0 {
				break
			}
			s.got[i] = append(s.got[i], o.Data...)
			s.at[i] = o.Offset + int64(len(o.Data))
			grew = true
		}
	}
	return grew, nil
}
