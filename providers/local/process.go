package local

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

const (
	// keepFinished is how many finished processes a sandbox keeps (with
	// their output) before the oldest are forgotten.
	keepFinished = 32
	// pollInterval paces waits on processes this server did not start.
	pollInterval = 25 * time.Millisecond
	// stdinTimeout bounds a write to a process that does not read its stdin.
	stdinTimeout = 5 * time.Second
)

var _ providers.Processes = (*Provider)(nil)

// Layout: <dir>/<id>/procs/{next,.lock,<n>/}.
func (p *Provider) procs(id string) string         { return filepath.Join(p.base(id), "procs") }
func (p *Provider) procDir(id, proc string) string { return filepath.Join(p.procs(id), proc) }

// newProcDir allocates the next process number. The counter lives on disk
// under a lock, so numbers are never reused, whichever server allocates.
func (p *Provider) newProcDir(id string) (string, string, error) {
	dir := p.procs(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	if err := flockWithin(lock, syscall.LOCK_EX, lockWait); err != nil {
		return "", "", err
	}
	next := 1
	if b, err := readRecord(filepath.Join(dir, "next"), maxSmallRecord); err == nil {
		next, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		next = max(next, 1)
	}
	proc := strconv.Itoa(next)
	if err := os.Mkdir(filepath.Join(dir, proc), 0o700); err != nil {
		return "", "", err
	}
	return proc, filepath.Join(dir, proc), writeAtomic(filepath.Join(dir, "next"), []byte(strconv.Itoa(next+1)))
}

// selfExe is this binary, even if it was replaced on disk since it started.
func selfExe() (string, error) {
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		return "/proc/self/exe", nil
	}
	return os.Executable()
}

func (p *Provider) StartProcess(ctx context.Context, id string, spec providers.ProcessSpec) (providers.ProcessInfo, error) {
	m, err := p.load(id)
	if err != nil {
		return providers.ProcessInfo{}, err
	}
	if strings.TrimSpace(spec.Command) == "" {
		return providers.ProcessInfo{}, providers.Errorf(providers.ErrInvalidArgument, "command is empty")
	}
	if err := providers.ValidateEnv(spec.Env); err != nil {
		return providers.ProcessInfo{}, err
	}
	cwd, err := p.cwd(id, spec.Cwd)
	if err != nil {
		return providers.ProcessInfo{}, err
	}
	j, err := p.jailOf(ctx, m)
	if err != nil {
		return providers.ProcessInfo{}, err
	}
	proc, dir, err := p.newProcDir(id)
	if err != nil {
		return providers.ProcessInfo{}, tableErr(id, "start process", err)
	}
	fail := func(err error) (providers.ProcessInfo, error) {
		removeAll(dir)
		return providers.ProcessInfo{}, providers.Errorf(providers.ErrUnavailable, "start process: %w", err)
	}
	ps := procSpec{
		Command: spec.Command, Dir: p.commandCwd(m, cwd), Env: commandEnv(m, spec.Env), Socket: j.Socket(),
		Stdin: spec.Stdin, OpenStdin: spec.OpenStdin, Timeout: spec.Timeout,
		OutputLimit: spec.OutputLimit, CreatedAt: time.Now().UTC(),
	}
	if ps.OutputLimit <= 0 {
		ps.OutputLimit = defaultOutputLimit
	}
	// Written in place: nothing reads spec.json before state.json exists.
	b, err := json.Marshal(ps)
	if err == nil {
		err = writeNew(filepath.Join(dir, "spec.json"), b)
	}
	if err != nil {
		return fail(err)
	}

	sup, err := p.takeSupervisor()
	if err != nil {
		return fail(err)
	}
	defer sup.ready.Close()
	// Hand it the directory; wake waiters at once when it ends, instead of
	// at their next poll.
	p.mu.Lock()
	p.exited[dir] = sup.exited
	p.mu.Unlock()
	go func() {
		<-sup.exited
		p.mu.Lock()
		delete(p.exited, dir)
		p.mu.Unlock()
	}()
	_, err = io.WriteString(sup.ctrl, dir+"\n")
	sup.ctrl.Close()
	if err != nil {
		sup.cmd.Process.Kill()
		return fail(err)
	}
	sup.ready.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(sup.ready).ReadString('\n')
	if line != "ok\n" {
		sup.cmd.Process.Kill()
		if line == "" {
			line = "the supervisor exited without starting the command"
		}
		return fail(errors.New(strings.TrimSpace(line)))
	}
	p.pruneFinished(id)
	return p.procInfo(id, proc)
}

// supervisorArg0 names supervisors in ps, and lets Destroy find them.
const supervisorArg0 = "mcp-sandbox-supervise"

// supervisor is a supervisor process parked until it is told which
// process directory to run (see supervise.go).
type supervisor struct {
	cmd    *exec.Cmd
	ready  *os.File // reads "ok" or the start error
	ctrl   *os.File // takes the process directory
	exited chan struct{}
}

// spawnSupervisor starts a parked supervisor: this binary again, in a
// session of its own so it outlives this server, with none of the server's
// environment.
//
// With adopt files (a foreground command's stdout and stderr pipes, and its
// connection to its jail unless it exited already), it
// adopts that running command instead of starting one.
func spawnSupervisor(adopt ...*os.File) (*supervisor, error) {
	exe, err := selfExe()
	if err != nil {
		return nil, fmt.Errorf("find the supervisor binary: %w", err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ctrlR, ctrlW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Args = []string{supervisorArg0}
	cmd.Env = []string{superviseVar + "=start"}
	switch len(adopt) {
	case 2: // stdout and stderr
		cmd.Env = []string{superviseVar + "=adopt"}
	case 3: // and the command's connection to its jail
		cmd.Env = []string{superviseVar + "=adopt-jail"}
	}
	cmd.Dir = "/"
	cmd.ExtraFiles = append([]*os.File{readyW, ctrlR}, adopt...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	ctrlR.Close()
	if err != nil {
		readyR.Close()
		ctrlW.Close()
		return nil, err
	}
	s := &supervisor{cmd: cmd, ready: readyR, ctrl: ctrlW, exited: make(chan struct{})}
	go func() {
		cmd.Wait() // reap it if it ends while this server runs
		close(s.exited)
	}()
	return s, nil
}

// takeSupervisor returns the parked spare, or a new one, and parks another
// for the next start: Go's start-up then stays off the critical path.
func (p *Provider) takeSupervisor() (*supervisor, error) {
	p.mu.Lock()
	s := p.spare
	p.spare = nil
	p.mu.Unlock()
	if s != nil {
		select {
		case <-s.exited:
			s = nil
		default:
		}
	}
	var err error
	if s == nil {
		if s, err = spawnSupervisor(); err != nil {
			return nil, err
		}
	}
	go func() {
		next, err := spawnSupervisor()
		if err != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.spare != nil || p.closed {
			next.ctrl.Close() // it exits on end-of-file
			next.ready.Close()
			return
		}
		p.spare = next
	}()
	return s, nil
}

// pruneFinished forgets the oldest finished processes beyond keepFinished.
func (p *Provider) pruneFinished(id string) {
	// Cheap check first: reading every record on each start adds up.
	if ents, err := readDir(p.procs(id)); err != nil || len(ents) <= keepFinished+3 { // + next, .lock, the new one
		return
	}
	infos, err := p.ListProcesses(context.Background(), id)
	if err != nil {
		return
	}
	var finished []string
	for _, in := range infos {
		if !in.Running {
			finished = append(finished, in.ID)
		}
	}
	for i := 0; i < len(finished)-keepFinished; i++ {
		removeAll(p.procDir(id, finished[i]))
	}
}

// supervisorAlive reports whether the supervisor still holds its lock.
func supervisorAlive(dir string) bool {
	f, err := openDir(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	// Supervisors hold the lock exclusively, or shared while this server
	// and an adopting supervisor both answer for a process.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// procInfo reads a process's state from its directory.
func (p *Provider) procInfo(id, proc string) (providers.ProcessInfo, error) {
	if !providers.ValidProcessID(proc) {
		return providers.ProcessInfo{}, providers.ProcessNotFound(proc)
	}
	if _, err := p.load(id); err != nil {
		return providers.ProcessInfo{}, err
	}
	dir := p.procDir(id, proc)
	var spec procSpec
	var st procState
	if err := readJSON(filepath.Join(dir, "spec.json"), &spec); err != nil {
		return providers.ProcessInfo{}, recordErr(proc, "spec.json", err)
	}
	if err := readJSON(filepath.Join(dir, "state.json"), &st); err != nil {
		return providers.ProcessInfo{}, recordErr(proc, "state.json", err) // missing: not started (yet, or ever)
	}
	in := providers.ProcessInfo{ID: proc, Command: spec.Command, StartedAt: st.StartedAt, Running: true}
	var ex procExit
	err := readJSON(filepath.Join(dir, "exit.json"), &ex)
	if errors.Is(err, fs.ErrNotExist) && !supervisorAlive(dir) {
		// The supervisor may have written its record just before exiting.
		err = readJSON(filepath.Join(dir, "exit.json"), &ex)
		if err != nil {
			in.Running, in.ExitCode = false, -1
		}
	}
	if err == nil {
		in.Running, in.ExitCode, in.TimedOut, in.EndedAt = false, ex.ExitCode, ex.TimedOut, ex.EndedAt
	}
	for _, s := range []struct {
		name string
		n    *int64
	}{{"stdout", &in.StdoutBytes}, {"stderr", &in.StderrBytes}} {
		segs, _ := segments(dir, s.name)
		*s.n = streamTotal(segs)
	}
	if spec.OpenStdin && in.Running {
		_, err := os.Stat(filepath.Join(dir, "stdin.closed"))
		in.StdinOpen = errors.Is(err, fs.ErrNotExist)
	}
	return in, nil
}

// tableErr is the error for a failure on the sandbox's process table,
// saying when sandboxed code damaged it.
func tableErr(id, op string, err error) error {
	var nr *errNotRegular
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) || errors.As(err, &nr) {
		return providers.Errorf(providers.ErrUnavailable, "%s: the process records of sandbox %s are damaged (%v); destroy the sandbox", op, id, err)
	}
	return providers.Errorf(providers.ErrUnavailable, "%s: %w", op, err)
}

// recordErr is the error for a process record that cannot be read: not
// found when it is missing, damaged when sandboxed code spoiled it.
func recordErr(proc, file string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return providers.ProcessNotFound(proc)
	}
	return providers.Errorf(providers.ErrUnavailable,
		"the record of process %s is damaged (%s: %v); only signal KILL, or destroying the sandbox, still reaches it", proc, file, err)
}

func (p *Provider) exitedChan(id, proc string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited[p.procDir(id, proc)]
}

// pause waits for d, the process's exit, or ctx, whichever is first.
func (p *Provider) pause(ctx context.Context, id, proc string, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.exitedChan(id, proc): // nil (never ready) for others' processes
	case <-t.C:
	}
	return nil
}

func (p *Provider) WaitProcess(ctx context.Context, id, proc string, timeout time.Duration) (providers.ProcessInfo, error) {
	deadline := time.Now().Add(timeout)
	for {
		in, err := p.procInfo(id, proc)
		left := time.Until(deadline)
		if err != nil || !in.Running || left <= 0 {
			return in, err
		}
		d := left
		if p.exitedChan(id, proc) == nil {
			d = min(d, pollInterval)
		}
		if err := p.pause(ctx, id, proc, d); err != nil {
			return in, err
		}
	}
}

func (p *Provider) ListProcesses(ctx context.Context, id string) ([]providers.ProcessInfo, error) {
	if _, err := p.load(id); err != nil {
		return nil, err
	}
	ents, err := readDir(p.procs(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, tableErr(id, "list processes", err)
	}
	var nums []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := make([]providers.ProcessInfo, 0, len(nums))
	for _, n := range nums {
		in, err := p.procInfo(id, strconv.Itoa(n))
		if err != nil {
			continue // starting, or removed meanwhile
		}
		out = append(out, in)
	}
	return out, nil
}

func (p *Provider) ReadOutput(ctx context.Context, id, proc string, req providers.OutputRequest) (providers.Output, error) {
	if req.Stream != providers.Stdout && req.Stream != providers.Stderr {
		return providers.Output{}, providers.Errorf(providers.ErrInvalidArgument, "stream must be %q or %q, not %q", providers.Stdout, providers.Stderr, req.Stream)
	}
	if req.Offset < 0 || req.Limit < 1 {
		return providers.Output{}, providers.Errorf(providers.ErrInvalidArgument, "offset must be at least 0 and limit at least 1 (got %d, %d)", req.Offset, req.Limit)
	}
	deadline := time.Now().Add(req.Wait)
	for {
		// State first: when it says exited, the read after it is complete.
		in, err := p.procInfo(id, proc)
		if err != nil {
			return providers.Output{}, err
		}
		data, off, total, err := readStream(p.procDir(id, proc), string(req.Stream), req.Offset, req.Limit)
		if err != nil {
			if errors.Is(err, providers.ErrInvalidArgument) {
				return providers.Output{}, err
			}
			return providers.Output{}, providers.Errorf(providers.ErrUnavailable, "read output of process %s: %w", proc, err)
		}
		left := time.Until(deadline)
		if len(data) > 0 || !in.Running || left <= 0 {
			return providers.Output{Data: data, Offset: off, Skipped: off - req.Offset, Total: total, Process: in}, nil
		}
		if err := p.pause(ctx, id, proc, min(left, pollInterval)); err != nil {
			return providers.Output{}, err
		}
	}
}

func (p *Provider) WriteStdin(ctx context.Context, id, proc string, data []byte, closeStdin bool) error {
	in, err := p.procInfo(id, proc)
	if err != nil {
		return err
	}
	dir := p.procDir(id, proc)
	var spec procSpec
	if err := readJSON(filepath.Join(dir, "spec.json"), &spec); err != nil {
		return providers.ProcessNotFound(proc)
	}
	switch {
	case !spec.OpenStdin:
		return providers.Errorf(providers.ErrInvalidArgument, "process %s was started without open stdin; start it again with stdin kept open", proc)
	case !in.Running:
		return providers.Errorf(providers.ErrInvalidArgument, "process %s has exited (exit code %d); it reads no more input", proc, in.ExitCode)
	case !in.StdinOpen:
		return providers.Errorf(providers.ErrInvalidArgument, "the standard input of process %s was already closed", proc)
	}
	// One writer at a time, so that concurrent writes do not interleave.
	lock, err := os.OpenFile(filepath.Join(dir, "stdin.lock"), os.O_CREATE|os.O_RDWR|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return providers.Errorf(providers.ErrUnavailable, "write stdin: %w", err)
	}
	defer lock.Close()
	if err := flockWithin(lock, syscall.LOCK_EX, stdinTimeout); err != nil {
		return providers.Errorf(providers.ErrUnavailable, "write stdin: %w", err)
	}
	fd, err := syscall.Open(filepath.Join(dir, "stdin"), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENOENT) {
		return providers.Errorf(providers.ErrInvalidArgument, "process %s has exited; it reads no more input", proc)
	}
	if err != nil {
		return providers.Errorf(providers.ErrUnavailable, "write stdin: %w", err)
	}
	f := os.NewFile(uintptr(fd), "stdin") // non-blocking: writes honour the deadline
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		return providers.Errorf(providers.ErrUnavailable, "write stdin: the record of process %s is damaged (its stdin is not a pipe); remove the process", proc)
	}
	deadline := time.Now().Add(stdinTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	f.SetWriteDeadline(deadline)
	written := 0
	frame := make([]byte, 0, maxFrame)
	for written < len(data) || closeStdin {
		chunk := data[written:min(len(data), written+maxFrame-4)]
		frame = binary.BigEndian.AppendUint32(frame[:0], uint32(len(chunk)))
		frame = append(frame, chunk...)
		if _, err := f.Write(frame); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return providers.Errorf(providers.ErrTimeout, "process %s is not reading its standard input: %d of %d bytes were delivered", proc, written, len(data))
			}
			return providers.Errorf(providers.ErrInvalidArgument, "process %s stopped reading input after %d of %d bytes: %w", proc, written, len(data), err)
		}
		written += len(chunk)
		if len(chunk) == 0 { // the end-of-file frame
			touch(filepath.Join(dir, "stdin.closed"))
			break
		}
	}
	return nil
}

var signals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP,
	"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
}

// ParseSignal accepts a signal name with or without "SIG", in any case.
func ParseSignal(name string) (syscall.Signal, error) {
	s, ok := signals[strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")]
	if !ok {
		return 0, providers.Errorf(providers.ErrInvalidArgument, "unknown signal %q; use one of TERM, KILL, INT, HUP, QUIT, USR1, USR2, STOP, CONT", name)
	}
	return s, nil
}

func (p *Provider) SignalProcess(ctx context.Context, id, proc, signal string) error {
	sig, err := ParseSignal(signal)
	if err != nil {
		return err
	}
	in, err := p.procInfo(id, proc)
	if errors.Is(err, providers.ErrUnavailable) && sig == syscall.SIGKILL {
		p.killDamaged(id, proc)
		return nil
	}
	if err != nil {
		return err
	}
	if !in.Running {
		return providers.Errorf(providers.ErrInvalidArgument, "process %s has already exited (exit code %d)", proc, in.ExitCode)
	}
	var st procState
	if err := readJSON(filepath.Join(p.procDir(id, proc), "state.json"), &st); err != nil || st.Pid < 1 {
		return providers.ProcessNotFound(proc)
	}
	m, err := p.load(id)
	if err != nil {
		return err
	}
	j, err := p.jailOf(ctx, m)
	if err != nil {
		return err
	}
	// The command leads its own process group: its jail signals all of it.
	if err := j.Signal(st.Pid, sig); err != nil {
		if in, ierr := p.procInfo(id, proc); ierr == nil && !in.Running {
			return nil // it exited in between
		}
		return providers.Errorf(providers.ErrUnavailable, "signal process %s: %w", proc, err)
	}
	return nil
}

// killProcesses kills the supervisor of every live process the sandbox has
// a record of, so that none writes into the sandbox while Destroy removes
// it; their commands ended with the sandbox's jail.
func (p *Provider) killProcesses(id string) {
	ents, _ := readDir(p.procs(id))
	for _, e := range ents {
		dir := filepath.Join(p.procs(id), e.Name())
		var st procState
		if !providers.ValidProcessID(e.Name()) || readJSON(filepath.Join(dir, "state.json"), &st) != nil || !supervisorAlive(dir) {
			continue // finished, or never started: its pids may be reused
		}
		if st.Supervisor > 1 {
			syscall.Kill(st.Supervisor, syscall.SIGKILL)
		}
	}
	// Supervisors whose records were spoiled, found by the directory they
	// hold open.
	base := p.base(id)
	killProcessesWhere(func(pid int) bool { return supervises(pid, base) })
}

// killDamaged kills a process whose record is damaged: its supervisor,
// found by the directory it holds open, goes with its command.
func (p *Provider) killDamaged(id, proc string) {
	dir := p.procDir(id, proc)
	killProcessesWhere(func(pid int) bool { return supervises(pid, dir) })
}

func (p *Provider) RemoveProcess(ctx context.Context, id, proc string) error {
	in, err := p.procInfo(id, proc)
	if errors.Is(err, providers.ErrUnavailable) {
		p.killDamaged(id, proc)
		if err := removeAll(p.procDir(id, proc)); err != nil {
			return providers.Errorf(providers.ErrUnavailable, "remove process %s: %w", proc, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if in.Running {
		if err := p.SignalProcess(ctx, id, proc, "KILL"); err != nil && !errors.Is(err, providers.ErrInvalidArgument) {
			return err
		}
		// Let the supervisor record the exit before its directory goes.
		p.WaitProcess(ctx, id, proc, 2*time.Second)
	}
	if err := removeAll(p.procDir(id, proc)); err != nil {
		return providers.Errorf(providers.ErrUnavailable, "remove process %s: %w", proc, err)
	}
	return nil
}
