package docker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// See procscripts.go for how a process lives in the container.

const (
	// procKeepFinished is how many finished processes a sandbox keeps
	// (with their output) before the oldest are forgotten.
	procKeepFinished = "32"
	// defaultOutputLimit is the bytes kept per stream when a spec sets none.
	defaultOutputLimit = 64 << 20
	// maxProcWait bounds one in-container wait, so an abandoned call's
	// script does not linger; longer waits are made of several.
	maxProcWait = 5 * time.Minute
	// maxProcScriptOutput bounds what a record-printing script may send.
	maxProcScriptOutput = 16 << 20
)

var _ providers.Processes = (*Provider)(nil)

// shellQuote quotes s for sh: nothing inside single quotes is special.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runScript is procRunScript content: cd to the working directory, then the
// command with the caller's environment on top of the container's. The
// environment goes through env(1), which takes any name the Exec API takes.
func runScript(dir, command string, env map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cd %s || exit 126\nexec ", shellQuote(dir))
	if len(env) > 0 {
		b.WriteString("env --")
		for _, kv := range envList(env) {
			b.WriteString(" " + shellQuote(kv))
		}
		b.WriteString(" ")
	}
	fmt.Fprintf(&b, "/bin/sh -c %s mcp-sandbox-proc\n", shellQuote(command))
	return b.String()
}

// caps splits an output limit into the head segment and each of the two
// tail segments, as local does: the head is half.
func caps(limit int64) (head, tail int64) {
	if limit <= 0 {
		limit = defaultOutputLimit
	}
	head = max(limit/2, 1)
	return head, max((limit-head)/2, 1)
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// centiseconds formats a wait for the scripts, at most maxProcWait: longer
// waits are made of several.
func centiseconds(d time.Duration) string {
	return strconv.FormatInt(int64(min(max(d, 0), maxProcWait)/(10*time.Millisecond)), 10)
}

// startArgs checks a spec and returns the start function's arguments (see
// procStartFunc) and the initial stdin, nil when there is none.
func (p *Provider) startArgs(ctx context.Context, id string, spec providers.ProcessSpec) ([]string, *bytes.Reader, error) {
	wd, err := p.workdir(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if strings.TrimSpace(spec.Command) == "" {
		return nil, nil, providers.Errorf(providers.ErrInvalidArgument, "command is empty")
	}
	if strings.ContainsRune(spec.Command, 0) {
		return nil, nil, providers.Errorf(providers.ErrInvalidArgument, "command contains a NUL byte")
	}
	if err := providers.ValidateEnv(spec.Env); err != nil {
		return nil, nil, err
	}
	dir, err := p.cwd(ctx, id, wd, spec.Cwd)
	if err != nil {
		return nil, nil, err
	}
	head, tail := caps(spec.OutputLimit)
	open, timeout := "0", "0"
	if spec.OpenStdin {
		open = "1"
	}
	if spec.Timeout > 0 {
		timeout = seconds(max(spec.Timeout, time.Millisecond))
	}
	// The marker (execMarker, as for Exec) finds the command's children
	// that leave its process group, when a timeout or a removal kills it.
	token := randomHex(12)
	env := map[string]string{}
	for k, v := range spec.Env {
		env[k] = v
	}
	env[execMarker] = token
	line := fmt.Sprintf("%d %s %s %d %d %s %s", time.Now().UnixNano(), open, timeout, head, tail, token, strconv.Quote(spec.Command))
	hasStdin := "0"
	var stdin *bytes.Reader
	if len(spec.Stdin) > 0 {
		hasStdin, stdin = "1", bytes.NewReader(spec.Stdin)
	}
	return []string{line, runScript(dir, spec.Command, env), procSupervisor, hasStdin}, stdin, nil
}

func (p *Provider) StartProcess(ctx context.Context, id string, spec providers.ProcessSpec) (providers.ProcessInfo, error) {
	args, stdin, err := p.startArgs(ctx, id, spec)
	if err != nil {
		return providers.ProcessInfo{}, err
	}
	// Cancelling ctx cancels the start, not the process: the exec goes on
	// to the end on its own context, and is short.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out, err := p.procScript(sctx, id, "start", procStartScript, maxProcScriptOutput, stdin, args...)
	if err != nil {
		return providers.ProcessInfo{}, err
	}
	if msg, ok := strings.CutPrefix(string(out), "error "); ok {
		return providers.ProcessInfo{}, providers.Errorf(providers.ErrUnavailable, "start process: %s", strings.TrimSpace(msg))
	}
	recs := parseRecords(out)
	if len(recs) != 1 {
		return providers.ProcessInfo{}, providers.Errorf(providers.ErrUnavailable, "start process: unexpected answer from the sandbox: %q", truncate(string(out)))
	}
	return recs[0], nil
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// procScript runs one of the process scripts and returns its stdout.
func (p *Provider) procScript(ctx context.Context, id, op, script string, limit int, stdin *bytes.Reader, args ...string) ([]byte, error) {
	if _, err := p.workdir(ctx, id); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	argv := append([]string{"/bin/sh", "-c", script, "mcp-sandbox-" + op}, args...)
	var code int
	var errOut string
	var err error
	if stdin != nil {
		code, errOut, err = p.run(ctx, id, stdin, &limitedWriter{w: &out, n: limit}, argv...)
	} else {
		code, errOut, err = p.run(ctx, id, nil, &limitedWriter{w: &out, n: limit}, argv...)
	}
	if err != nil {
		return nil, p.apiErr(id, op+" process", err)
	}
	if code != 0 {
		return nil, providers.Errorf(providers.ErrUnavailable, "%s process: the sandbox's script failed (exit %d): %s", op, code, strings.TrimSpace(errOut))
	}
	if bytes.HasPrefix(out.Bytes(), []byte("notfound")) {
		return nil, errNoProc
	}
	return out.Bytes(), nil
}

var errNoProc = errors.New("no such process")

func (p *Provider) WaitProcess(ctx context.Context, id, proc string, timeout time.Duration) (providers.ProcessInfo, error) {
	if _, err := p.workdir(ctx, id); err != nil {
		return providers.ProcessInfo{}, err
	}
	if !providers.ValidProcessID(proc) {
		return providers.ProcessInfo{}, providers.ProcessNotFound(proc)
	}
	deadline := time.Now().Add(timeout)
	for {
		out, err := p.procScript(ctx, id, "wait", procWaitScript, maxProcScriptOutput, nil, proc, centiseconds(time.Until(deadline)))
		if errors.Is(err, errNoProc) {
			return providers.ProcessInfo{}, providers.ProcessNotFound(proc)
		}
		if err != nil {
			return providers.ProcessInfo{}, err
		}
		in, err := oneRecord(out, proc)
		if err != nil || !in.Running || !time.Now().Before(deadline) {
			return in, err
		}
	}
}

func oneRecord(out []byte, proc string) (providers.ProcessInfo, error) {
	recs := parseRecords(out)
	if len(recs) != 1 || recs[0].ID != proc {
		return providers.ProcessInfo{}, providers.Errorf(providers.ErrUnavailable, "process %s: unexpected answer from the sandbox: %q", proc, truncate(string(out)))
	}
	return recs[0], nil
}

func (p *Provider) ListProcesses(ctx context.Context, id string) ([]providers.ProcessInfo, error) {
	out, err := p.procScript(ctx, id, "list", procListScript, maxProcScriptOutput, nil)
	if err != nil {
		return nil, err
	}
	recs := parseRecords(out)
	sort.Slice(recs, func(i, j int) bool {
		a, _ := strconv.ParseInt(recs[i].ID, 10, 64)
		b, _ := strconv.ParseInt(recs[j].ID, 10, 64)
		return a < b
	})
	return recs, nil
}

func (p *Provider) ReadOutput(ctx context.Context, id, proc string, req providers.OutputRequest) (providers.Output, error) {
	if req.Stream != providers.Stdout && req.Stream != providers.Stderr {
		return providers.Output{}, providers.Errorf(providers.ErrInvalidArgument, "stream must be %q or %q, not %q", providers.Stdout, providers.Stderr, req.Stream)
	}
	if req.Offset < 0 || req.Limit < 1 {
		return providers.Output{}, providers.Errorf(providers.ErrInvalidArgument, "offset must be at least 0 and limit at least 1 (got %d, %d)", req.Offset, req.Limit)
	}
	if _, err := p.workdir(ctx, id); err != nil {
		return providers.Output{}, err
	}
	if !providers.ValidProcessID(proc) {
		return providers.Output{}, providers.ProcessNotFound(proc)
	}
	deadline := time.Now().Add(req.Wait)
	for attempt := 0; ; attempt++ {
		out, err := p.procScript(ctx, id, "read", procReadScript, req.Limit+maxProcScriptOutput, nil,
			proc, string(req.Stream), strconv.FormatInt(req.Offset, 10), strconv.Itoa(req.Limit), centiseconds(time.Until(deadline)))
		if errors.Is(err, errNoProc) {
			return providers.Output{}, providers.ProcessNotFound(proc)
		}
		if err != nil {
			return providers.Output{}, err
		}
		res, complete, err := parseRead(out, proc, req)
		if err == nil && complete && len(res.Data) == 0 && res.Process.Running && time.Now().Before(deadline) {
			attempt = -1 // a wait longer than one script waits
			continue
		}
		if err != nil || complete {
			return res, err
		}
		// A segment went away between listing and reading (the writer
		// rotated past it); the next listing no longer has it.
		if attempt == 3 {
			return providers.Output{}, providers.Errorf(providers.ErrUnavailable, "read output of process %s: the output kept changing under the read; try again", proc)
		}
	}
}

// parseRead splits a read script's answer into the record and the data;
// complete is false when fewer bytes came than announced.
func parseRead(out []byte, proc string, req providers.OutputRequest) (providers.Output, bool, error) {
	var header []byte
	var tail []byte
	for rest := out; len(rest) > 0; {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		if bytes.HasPrefix(line, []byte("data ")) || bytes.HasPrefix(line, []byte("pastend ")) {
			tail = rest
			break
		}
		header = append(header, line...)
		header = append(header, '\n')
		rest = after
	}
	in, err := oneRecord(header, proc)
	if err != nil {
		return providers.Output{}, false, err
	}
	line, data, _ := bytes.Cut(tail, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) == 2 && f[0] == "pastend" {
		return providers.Output{}, true, providers.Errorf(providers.ErrInvalidArgument,
			"offset %d is past the end of %s, which has %s bytes so far", req.Offset, req.Stream, f[1])
	}
	if len(f) != 4 || f[0] != "data" {
		return providers.Output{}, false, providers.Errorf(providers.ErrUnavailable, "read output of process %s: unexpected answer from the sandbox: %q", proc, truncate(string(out)))
	}
	from, err1 := strconv.ParseInt(f[1], 10, 64)
	total, err2 := strconv.ParseInt(f[2], 10, 64)
	n, err3 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil || n > req.Limit || from < req.Offset {
		return providers.Output{}, false, providers.Errorf(providers.ErrUnavailable, "read output of process %s: unexpected answer from the sandbox: %q", proc, line)
	}
	if len(data) != n {
		return providers.Output{}, false, nil
	}
	return providers.Output{Data: data, Offset: from, Skipped: from - req.Offset, Total: total, Process: in}, true, nil
}

func (p *Provider) WriteStdin(ctx context.Context, id, proc string, data []byte, closeStdin bool) error {
	if _, err := p.workdir(ctx, id); err != nil {
		return err
	}
	if !providers.ValidProcessID(proc) {
		return providers.ProcessNotFound(proc)
	}
	closing, hasData := "0", "0"
	if closeStdin {
		closing = "1"
	}
	var stdin *bytes.Reader
	if len(data) > 0 {
		hasData, stdin = "1", bytes.NewReader(data)
	}
	out, err := p.procScript(ctx, id, "stdin", procStdinScript, maxProcScriptOutput, stdin, proc, closing, hasData)
	if errors.Is(err, errNoProc) {
		return providers.ProcessNotFound(proc)
	}
	if err != nil {
		return err
	}
	word, rest, _ := strings.Cut(string(out), "\n")
	switch word {
	case "ok":
		return nil
	case "nostdin":
		return providers.Errorf(providers.ErrInvalidArgument, "process %s was started without open stdin; start it again with stdin kept open", proc)
	case "exited":
		if in, err := oneRecord([]byte(rest), proc); err == nil && !in.Running {
			return providers.Errorf(providers.ErrInvalidArgument, "process %s has exited (exit code %d); it reads no more input", proc, in.ExitCode)
		}
		return providers.Errorf(providers.ErrInvalidArgument, "process %s has exited; it reads no more input", proc)
	case "closed":
		return providers.Errorf(providers.ErrInvalidArgument, "the standard input of process %s was already closed", proc)
	case "timeout":
		return providers.Errorf(providers.ErrTimeout, "process %s is not reading its standard input: the %d bytes were not all delivered within 5s", proc, len(data))
	case "busy":
		return providers.Errorf(providers.ErrUnavailable, "another write to the standard input of process %s has not finished; try again", proc)
	}
	return providers.Errorf(providers.ErrUnavailable, "write stdin of process %s: unexpected answer from the sandbox: %q", proc, truncate(string(out)))
}

// signals are the names SignalProcess accepts; the shell's kill takes them.
var signals = []string{"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT"}

// parseSignal accepts a signal name with or without "SIG", in any case.
func parseSignal(name string) (string, error) {
	s := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	for _, known := range signals {
		if s == known {
			return s, nil
		}
	}
	return "", providers.Errorf(providers.ErrInvalidArgument, "unknown signal %q; use one of %s", name, strings.Join(signals, ", "))
}

func (p *Provider) SignalProcess(ctx context.Context, id, proc, signal string) error {
	sig, err := parseSignal(signal)
	if err != nil {
		return err
	}
	if _, err := p.workdir(ctx, id); err != nil {
		return err
	}
	if !providers.ValidProcessID(proc) {
		return providers.ProcessNotFound(proc)
	}
	out, err := p.procScript(ctx, id, "signal", procSignalScript, maxProcScriptOutput, nil, proc, sig)
	if errors.Is(err, errNoProc) {
		return providers.ProcessNotFound(proc)
	}
	if err != nil {
		return err
	}
	word, rest, _ := strings.Cut(string(out), "\n")
	switch word {
	case "ok":
		return nil
	case "exited":
		code := -1
		if in, err := oneRecord([]byte(rest), proc); err == nil {
			code = in.ExitCode
		}
		return providers.Errorf(providers.ErrInvalidArgument, "process %s has already exited (exit code %d)", proc, code)
	}
	return providers.Errorf(providers.ErrUnavailable, "signal process %s: unexpected answer from the sandbox: %q", proc, truncate(string(out)))
}

func (p *Provider) RemoveProcess(ctx context.Context, id, proc string) error {
	if _, err := p.workdir(ctx, id); err != nil {
		return err
	}
	if !providers.ValidProcessID(proc) {
		return providers.ProcessNotFound(proc)
	}
	out, err := p.procScript(ctx, id, "remove", procRemoveScript, maxProcScriptOutput, nil, proc)
	if errors.Is(err, errNoProc) {
		return providers.ProcessNotFound(proc)
	}
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(out)) != "ok" {
		return providers.Errorf(providers.ErrUnavailable, "remove process %s: unexpected answer from the sandbox: %q", proc, truncate(string(out)))
	}
	return nil
}

// procRecord accumulates one process's lines.
type procRecord struct {
	info     providers.ProcessInfo
	up0, up1 int64
	open     bool
	closed   bool
	exited   bool
}

// parseRecords reads the records the scripts print (see procPrelude's
// desc and segs). Everything in them comes from inside the sandbox, so
// anything malformed is skipped rather than trusted.
func parseRecords(out []byte) []providers.ProcessInfo {
	var order []string
	recs := map[string]*procRecord{}
	var cur *procRecord
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), maxProcScriptOutput)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "proc":
			if !providers.ValidProcessID(rest) {
				cur = nil
				continue
			}
			cur = &procRecord{info: providers.ProcessInfo{ID: rest, ExitCode: -1}}
			if _, dup := recs[rest]; !dup {
				order = append(order, rest)
			}
			recs[rest] = cur
		case "spec":
			if cur == nil {
				continue
			}
			f := strings.SplitN(rest, " ", 7)
			if len(f) != 7 {
				cur = nil
				continue
			}
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			cur.info.StartedAt = time.Unix(0, ns).UTC()
			cur.open = f[1] == "1"
			cur.info.Command, _ = strconv.Unquote(f[6])
		case "state":
			if f := strings.Fields(rest); cur != nil && len(f) >= 4 {
				cur.up0, _ = strconv.ParseInt(f[3], 10, 64)
			}
		case "running":
			if cur != nil {
				cur.info.Running = true
			}
		case "stdinclosed":
			if cur != nil {
				cur.closed = true
			}
		case "exit":
			if f := strings.Fields(rest); cur != nil && len(f) == 3 {
				code, err := strconv.Atoi(f[0])
				if err != nil {
					continue
				}
				cur.exited = true
				cur.info.ExitCode = code
				cur.info.TimedOut = f[1] == "1"
				cur.up1, _ = strconv.ParseInt(f[2], 10, 64)
			}
		case "seg":
			// seg <base>/<n>/<stream>.<start> <size>
			name, size, ok := strings.Cut(rest, " ")
			n, err := strconv.ParseInt(size, 10, 64)
			if !ok || err != nil {
				continue
			}
			file := path.Base(name)
			stream, startText, _ := strings.Cut(file, ".")
			start, err := strconv.ParseInt(startText, 10, 64)
			r := recs[path.Base(path.Dir(name))]
			if err != nil || r == nil {
				continue
			}
			switch stream {
			case string(providers.Stdout):
				r.info.StdoutBytes = max(r.info.StdoutBytes, start+n)
			case string(providers.Stderr):
				r.info.StderrBytes = max(r.info.StderrBytes, start+n)
			}
		}
	}
	infos := make([]providers.ProcessInfo, 0, len(order))
	for _, id := range order {
		r := recs[id]
		if r == nil || r.info.StartedAt.IsZero() {
			continue
		}
		if r.exited {
			// Both ends come from the container's uptime clock, so the
			// duration is exact whatever the two hosts' clocks say.
			r.info.EndedAt = r.info.StartedAt.Add(time.Duration(max(r.up1-r.up0, 0)) * 10 * time.Millisecond)
		}
		r.info.StdinOpen = r.info.Running && r.open && !r.closed
		infos = append(infos, r.info)
	}
	return infos
}
