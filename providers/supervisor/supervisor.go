// Package supervisor runs background processes in any POSIX sandbox for
// a driver that can run a shell command in it. Everything about a process
// lives inside the sandbox (see scripts.go), so any server can serve it by
// sandbox ID and process ID, and destroying the sandbox ends it.
//
// A driver embeds the *Supervisor that New returns: having its methods is
// having providers.Processes and providers.ProcessRunner.
package supervisor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Runner is what a driver lends the supervisor: its Exec, which runs a
// shell command in the sandbox with stdin, streamed output and the exit
// code.
type Runner interface {
	Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error)
}

// ArgvRunner is an optional fast path beside Runner: RunArgv runs argv as
// it is (no shell of the driver's around it) in the sandbox's workdir, with
// stdin (nil for none) as its input and its stdout to stdout, and returns
// the exit code and the start of its stderr. A driver whose Exec does more
// than the supervisor needs (docker's relays and kill marker) offers it.
type ArgvRunner interface {
	RunArgv(ctx context.Context, id string, argv []string, stdin io.Reader, stdout io.Writer) (code int, stderr string, err error)
}

// Options configure a Supervisor.
type Options struct {
	// Logger receives what the caller should know but is not an error (a
	// command run without a process record). Nil discards.
	Logger *slog.Logger
}

// Supervisor implements providers.Processes and providers.ProcessRunner
// over a Runner.
type Supervisor struct {
	r    Runner
	argv ArgvRunner
	log  *slog.Logger
	// helpers caches, per sandbox, the start function's SUPERVISOR
	// argument and the helper's path (see helperIn).
	helpers sync.Map
}

// New returns a supervisor running its scripts through r (through r's
// RunArgv when r is also an ArgvRunner).
func New(r Runner, o Options) *Supervisor {
	s := &Supervisor{r: r, log: o.Logger}
	s.argv, _ = r.(ArgvRunner)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

var (
	_ providers.Processes     = (*Supervisor)(nil)
	_ providers.ProcessRunner = (*Supervisor)(nil)
)

const (
	// procKeepFinished is how many finished processes a sandbox keeps
	// (with their output) before the oldest are forgotten.
	procKeepFinished = "32"
	// defaultOutputLimit is the bytes kept per stream when a spec sets none.
	defaultOutputLimit = 64 << 20
	// maxProcWait bounds one in-sandbox wait, so an abandoned call's
	// script does not linger; longer waits are made of several.
	maxProcWait = 5 * time.Minute
	// maxProcScriptOutput bounds what a record-printing script may send.
	maxProcScriptOutput = 16 << 20
)

// runScript is run.sh: cd to the working directory, then the command with
// the caller's environment on top of the sandbox's. The environment goes
// through env(1), which takes any name an Exec takes.
func runScript(dir, command string, env map[string]string) string {
	var b strings.Builder
	if dir != "" {
		fmt.Fprintf(&b, "cd %s || exit 126\n", providers.ShellQuote(dir))
	}
	b.WriteString("exec ")
	if len(env) > 0 {
		b.WriteString("env --")
		for _, k := range slices.Sorted(maps.Keys(env)) {
			b.WriteString(" " + providers.ShellQuote(k+"="+env[k]))
		}
		b.WriteString(" ")
	}
	fmt.Fprintf(&b, "/bin/sh -c %s mcp-sandbox-proc\n", providers.ShellQuote(command))
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

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startArgs checks a spec and returns the start function's arguments (see
// procStartFunc) and the initial stdin, nil when there is none.
func startArgs(spec providers.ProcessSpec) ([]string, *bytes.Reader, error) {
	if strings.TrimSpace(spec.Command) == "" {
		return nil, nil, providers.Errorf(providers.ErrInvalidArgument, "command is empty")
	}
	if strings.ContainsRune(spec.Command, 0) {
		return nil, nil, providers.Errorf(providers.ErrInvalidArgument, "command contains a NUL byte")
	}
	if strings.ContainsRune(spec.Cwd, 0) {
		return nil, nil, providers.Errorf(providers.ErrInvalidArgument, "cwd %q contains a NUL byte", spec.Cwd)
	}
	if err := providers.ValidateEnv(spec.Env); err != nil {
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
	// The marker finds the command's children that leave its process
	// group, when a timeout or a removal kills it.
	token := randomHex(12)
	env := maps.Clone(spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	env[marker] = token
	line := fmt.Sprintf("%d %s %s %d %d %s %s", time.Now().UnixNano(), open, timeout, head, tail, token, strconv.Quote(spec.Command))
	hasStdin := "0"
	var stdin *bytes.Reader
	if len(spec.Stdin) > 0 {
		hasStdin, stdin = "1", bytes.NewReader(spec.Stdin)
	}
	return []string{line, runScript(spec.Cwd, spec.Command, env), procSupervisor, hasStdin, spec.Cwd}, stdin, nil
}

// startError words what the start function answered instead of starting.
func startError(out []byte, cwd string) error {
	switch word := strings.TrimSpace(string(out)); {
	case word == "cwd missing":
		return providers.Errorf(providers.ErrNotFound, "cwd %q: no such directory", cwd)
	case word == "cwd notdir":
		return providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", cwd)
	case strings.HasPrefix(word, "error "):
		return providers.Errorf(providers.ErrUnavailable, "start process: %s", strings.TrimPrefix(word, "error "))
	}
	return nil
}

func (s *Supervisor) StartProcess(ctx context.Context, id string, spec providers.ProcessSpec) (providers.ProcessInfo, error) {
	args, stdin, err := startArgs(spec)
	if err != nil {
		return providers.ProcessInfo{}, err
	}
	// Cancelling ctx cancels the start, not the process: the script goes
	// on to the end on its own context, and is short.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var out []byte
	for attempt := 0; ; attempt++ {
		h := s.helper(sctx, id)
		args[2] = h.arg
		var in io.Reader
		if stdin != nil {
			stdin.Seek(0, io.SeekStart)
			in = stdin
		}
		// The helper starts it natively; the script is the same start.
		argv := append([]string{"/bin/sh", "-c", procStartScript, "mcp-sandbox-start"}, args...)
		if h.path != "" {
			argv = append([]string{h.path, "start"}, args...)
		}
		if out, err = s.runScript(sctx, id, "start", argv, maxProcScriptOutput, in); err != nil {
			return providers.ProcessInfo{}, err
		}
		if strings.TrimSpace(string(out)) == "error nohelper" && attempt == 0 {
			s.forgetHelper(id) // removed from the sandbox: upload it again
			continue
		}
		break
	}
	if err := startError(out, spec.Cwd); err != nil {
		return providers.ProcessInfo{}, err
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

// run runs argv in the sandbox: through the fast path when the driver
// offers one, else as a shell command through its Exec.
func (s *Supervisor) run(ctx context.Context, id string, stdin io.Reader, stdout io.Writer, argv ...string) (int, string, error) {
	if s.argv != nil {
		return s.argv.RunArgv(ctx, id, argv, stdin, stdout)
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = providers.ShellQuote(a)
	}
	var errOut bytes.Buffer
	res, err := s.r.Exec(ctx, id, providers.ExecRequest{
		Command: "exec " + strings.Join(quoted, " "),
		Stdin:   stdin,
		Stdout:  stdout,
		Stderr:  &limitedWriter{w: &errOut, n: 4 << 10},
	})
	return res.ExitCode, errOut.String(), err
}

// script runs one of the process scripts and returns its stdout.
func (s *Supervisor) script(ctx context.Context, id, op, script string, limit int, stdin io.Reader, args ...string) ([]byte, error) {
	return s.runScript(ctx, id, op, append([]string{"/bin/sh", "-c", script, "mcp-sandbox-" + op}, args...), limit, stdin)
}

// runScript runs a script's argv and returns its stdout.
func (s *Supervisor) runScript(ctx context.Context, id, op string, argv []string, limit int, stdin io.Reader) ([]byte, error) {
	var out bytes.Buffer
	code, errOut, err := s.run(ctx, id, stdin, &limitedWriter{w: &out, n: limit}, argv...)
	if err != nil {
		return nil, runErr(op+" process", err)
	}
	if code != 0 {
		return nil, providers.Errorf(providers.ErrUnavailable, "%s process: the sandbox's script failed (exit %d): %s", op, code, strings.TrimSpace(errOut))
	}
	if bytes.HasPrefix(out.Bytes(), []byte("notfound")) {
		return nil, errNoProc
	}
	return out.Bytes(), nil
}

// runErr keeps the driver's typed errors (an unknown sandbox is its
// ErrNotFound) and the context's; anything else is the backend failing.
func runErr(op string, err error) error {
	var pe *providers.Error
	if errors.As(err, &pe) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return providers.Errorf(providers.ErrUnavailable, "%s: %w", op, err)
}

// limitedWriter keeps the first n bytes and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

var errNoProc = errors.New("no such process")

func (s *Supervisor) WaitProcess(ctx context.Context, id, proc string, timeout time.Duration) (providers.ProcessInfo, error) {
	if !providers.ValidProcessID(proc) {
		return providers.ProcessInfo{}, providers.ProcessNotFound(proc)
	}
	deadline := time.Now().Add(timeout)
	for {
		out, err := s.script(ctx, id, "wait", procWaitScript, maxProcScriptOutput, nil, proc, centiseconds(time.Until(deadline)))
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

func (s *Supervisor) ListProcesses(ctx context.Context, id string) ([]providers.ProcessInfo, error) {
	out, err := s.script(ctx, id, "list", procListScript, maxProcScriptOutput, nil)
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

func (s *Supervisor) ReadOutput(ctx context.Context, id, proc string, req providers.OutputRequest) (providers.Output, error) {
	if req.Stream != providers.Stdout && req.Stream != providers.Stderr {
		return providers.Output{}, providers.Errorf(providers.ErrInvalidArgument, "stream must be %q or %q, not %q", providers.Stdout, providers.Stderr, req.Stream)
	}
	if req.Offset < 0 || req.Limit < 1 {
		return providers.Output{}, providers.Errorf(providers.ErrInvalidArgument, "offset must be at least 0 and limit at least 1 (got %d, %d)", req.Offset, req.Limit)
	}
	if !providers.ValidProcessID(proc) {
		return providers.Output{}, providers.ProcessNotFound(proc)
	}
	deadline := time.Now().Add(req.Wait)
	for attempt := 0; ; attempt++ {
		out, err := s.script(ctx, id, "read", procReadScript, req.Limit+maxProcScriptOutput, nil,
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

func (s *Supervisor) WriteStdin(ctx context.Context, id, proc string, data []byte, closeStdin bool) error {
	if !providers.ValidProcessID(proc) {
		return providers.ProcessNotFound(proc)
	}
	closing, hasData := "0", "0"
	if closeStdin {
		closing = "1"
	}
	var stdin io.Reader
	if len(data) > 0 {
		hasData, stdin = "1", bytes.NewReader(data)
	}
	out, err := s.script(ctx, id, "stdin", procStdinScript, maxProcScriptOutput, stdin, proc, closing, hasData)
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

func (s *Supervisor) SignalProcess(ctx context.Context, id, proc, signal string) error {
	sig, err := parseSignal(signal)
	if err != nil {
		return err
	}
	if !providers.ValidProcessID(proc) {
		return providers.ProcessNotFound(proc)
	}
	out, err := s.script(ctx, id, "signal", procSignalScript, maxProcScriptOutput, nil, proc, sig)
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

func (s *Supervisor) RemoveProcess(ctx context.Context, id, proc string) error {
	if !providers.ValidProcessID(proc) {
		return providers.ProcessNotFound(proc)
	}
	out, err := s.script(ctx, id, "remove", procRemoveScript, maxProcScriptOutput, nil, proc)
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
