package jail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Cmd is one command to run in a jail.
type Cmd struct {
	// Command runs under /bin/sh -c; Argv, when set, runs as is instead.
	Command string
	Argv    []string
	// Cwd is the working directory inside the jail; relative paths are
	// under /workspace, the default.
	Cwd string
	// Env adds KEY=VALUE entries to the minimal environment a command gets
	// (never the server's).
	Env            []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Timeout kills the command and everything it started; zero: none.
	Timeout time.Duration
}

// ErrTimeout is returned by Run when the command outlived Cmd.Timeout.
var ErrTimeout = errors.New("jail: command timed out and was killed with everything it started")

// outputGrace bounds how long Run waits for output after the exit: a
// command's processes all end with it, but a descriptor handed to another
// command through a Unix socket could keep a pipe open.
const outputGrace = 2 * time.Second

// Run runs a command in the jail and returns its exit code (128+signal when
// killed). Output streams to Stdout and Stderr as the command writes it.
// When ctx ends or the timeout passes, the command and everything it
// started are killed.
func (j *Jail) Run(ctx context.Context, c Cmd) (int, error) {
	argv := c.Argv
	if len(argv) == 0 {
		if c.Command == "" {
			return -1, errors.New("jail: nothing to run: set Cmd.Command or Cmd.Argv")
		}
		argv = []string{"/bin/sh", "-c", c.Command}
	}
	req := request{Op: opRun, Argv: argv, Cwd: c.Cwd, Env: c.Env}
	var passed []*os.File // the command's ends, closed once sent
	var copiers sync.WaitGroup
	var readEnds []*os.File // ours, closed when Run returns
	defer func() {
		for _, f := range passed {
			f.Close()
		}
	}()

	if c.Stdin != nil {
		if f, ok := c.Stdin.(*os.File); ok {
			d, err := dupFile(f)
			if err != nil {
				return -1, err
			}
			passed = append(passed, d)
		} else {
			r, w, err := os.Pipe()
			if err != nil {
				return -1, err
			}
			passed = append(passed, r)
			// Ends when Stdin does or the command stops reading (EPIPE);
			// like os/exec, a Stdin that never returns keeps it.
			go func() { io.Copy(w, c.Stdin); w.Close() }()
		}
		req.Stdio[0] = true
	}
	for i, out := range []io.Writer{c.Stdout, c.Stderr} {
		if out == nil {
			continue
		}
		req.Stdio[i+1] = true
		if f, ok := out.(*os.File); ok {
			d, err := dupFile(f)
			if err != nil {
				return -1, err
			}
			passed = append(passed, d)
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		passed = append(passed, w)
		readEnds = append(readEnds, r)
		copiers.Add(1)
		go func() { defer copiers.Done(); io.Copy(out, r) }()
	}
	defer func() {
		for _, r := range readEnds {
			r.Close()
		}
	}()

	proc, err := j.startCommand(req, passed)
	passed = nil
	if err != nil {
		return -1, err
	}

	// Kill on cancellation or timeout; the exit reply follows either way.
	var timeout <-chan time.Time
	if c.Timeout > 0 {
		t := time.NewTimer(c.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	exited := make(chan struct{})
	var killedBy error
	var killMu sync.Mutex
	go func() {
		select {
		case <-exited:
			return
		case <-ctx.Done():
			killMu.Lock()
			killedBy = ctx.Err()
			killMu.Unlock()
		case <-timeout:
			killMu.Lock()
			killedBy = ErrTimeout
			killMu.Unlock()
		}
		proc.Kill()
	}()
	code, err := proc.Wait()
	close(exited)
	if err != nil {
		return -1, err
	}
	waitCopiers(&copiers, readEnds)
	killMu.Lock()
	defer killMu.Unlock()
	return code, killedBy
}

// Process is a command started in a jail and not yet waited for.
type Process struct {
	conn *net.UnixConn
	pid  int
	name string
	mu   sync.Mutex // one packet at a time

	waitMu sync.Mutex // held by Wait while it reads the exit
	handed atomic.Bool
	exited bool // Wait read the exit
}

// ErrHandedOff is what Wait returns once the process was handed off.
var ErrHandedOff = errors.New("jail: the command was handed to another process")

// Start starts a command whose standard streams are files (nil: the null
// device), such as pipes or logs, and returns at once. The command runs
// until it exits, is killed, or the caller's process ends: a Process
// belongs to the process that started it.
func (j *Jail) Start(c Cmd) (*Process, error) {
	argv := c.Argv
	if len(argv) == 0 {
		if c.Command == "" {
			return nil, errors.New("jail: nothing to run: set Cmd.Command or Cmd.Argv")
		}
		argv = []string{"/bin/sh", "-c", c.Command}
	}
	req := request{Op: opRun, Argv: argv, Cwd: c.Cwd, Env: c.Env}
	var passed []*os.File
	for i, s := range []any{c.Stdin, c.Stdout, c.Stderr} {
		if s == nil || s == (*os.File)(nil) {
			continue
		}
		f, ok := s.(*os.File)
		if !ok {
			for _, f := range passed {
				f.Close()
			}
			return nil, fmt.Errorf("jail: Start passes files only (stream %d is a %T); use Run for other readers and writers", i, s)
		}
		d, err := dupFile(f)
		if err != nil {
			for _, f := range passed {
				f.Close()
			}
			return nil, err
		}
		passed = append(passed, d)
		req.Stdio[i] = true
	}
	return j.startCommand(req, passed)
}

// startCommand sends a run request with the command's streams (closed here,
// whatever happens) and waits until PID 1 has started it.
func (j *Jail) startCommand(req request, passed []*os.File) (*Process, error) {
	defer func() {
		for _, f := range passed {
			f.Close()
		}
	}()
	conn, err := dial(j.socket)
	if err != nil {
		return nil, err
	}
	fds := make([]int, len(passed))
	for i, f := range passed {
		fds[i] = int(f.Fd())
		// A pipe belongs to its creator's uid, which may not be the
		// sandbox's: let the command reopen its own streams (/dev/stdin,
		// /dev/stdout), which only holders of the pipe can reach.
		var st unix.Stat_t
		if unix.Fstat(fds[i], &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
			unix.Fchmod(fds[i], 0o666)
		}
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := conn.WriteMsgUnix(mustJSON(req), oob, nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("jail: sending the command to PID 1: %w", err)
	}
	var r reply
	if err := readReply(conn, &r); err != nil {
		conn.Close()
		return nil, fmt.Errorf("jail: starting %q: %w", req.Argv[0], err)
	}
	return &Process{conn: conn, pid: r.Pid, name: req.Argv[0]}, nil
}

// Pid is the command's pid inside the jail, for Jail.Signal.
func (p *Process) Pid() int { return p.pid }

// Signal sends sig to the command's process group, as a terminal does; see
// Jail.Signal.
func (p *Process) Signal(sig syscall.Signal) error {
	return p.send(request{Op: opSignal, Signal: int(sig)})
}

// Kill ends the command and everything it started.
func (p *Process) Kill() error { return p.send(request{Op: opKill}) }

func (p *Process) send(req request) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, _, err := p.conn.WriteMsgUnix(mustJSON(req), nil, nil); err != nil {
		return fmt.Errorf("jail: signalling %q: %w", p.name, err)
	}
	return nil
}

// Wait waits for the command to exit and returns its exit code (128+signal
// when a signal ended it).
func (p *Process) Wait() (int, error) {
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	if p.handed.Load() {
		return -1, ErrHandedOff
	}
	var r reply
	err := readReply(p.conn, &r)
	if err != nil && p.handed.Load() {
		return -1, ErrHandedOff
	}
	p.conn.Close()
	if err != nil {
		return -1, fmt.Errorf("jail: waiting for %q: %w", p.name, err)
	}
	p.exited = true
	return r.Code, nil
}

// Handoff gives the command to another process, which takes it up with
// Resume: the command then runs until it exits or that process ends, and
// this one neither waits for it nor ends it by going away. A Wait in
// progress returns ErrHandedOff, unless the command exited first: then
// Handoff returns no file and exited is true (the waiter has the code).
func (p *Process) Handoff() (f *os.File, exited bool, err error) {
	p.handed.Store(true)
	p.conn.SetReadDeadline(time.Unix(1, 0)) // wakes a Wait in progress
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	if p.exited {
		return nil, true, nil
	}
	p.conn.SetReadDeadline(time.Time{})
	f, err = p.conn.File()
	p.conn.Close()
	if err != nil {
		return nil, false, fmt.Errorf("jail: handing %q off: %w", p.name, err)
	}
	return f, false, nil
}

// Resume takes up a command handed off by Handoff, from the file it gave.
func Resume(f *os.File, name string) (*Process, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("jail: resuming %q: %w", name, err)
	}
	conn, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("jail: resuming %q: not a jail connection", name)
	}
	return &Process{conn: conn, name: name}, nil
}

// Signal sends sig to a running command by the pid Start reported, from
// any process that may reach the jail's socket. Where each command is the
// init of a pid namespace (which the kernel spares from signals it does not
// handle), a signal whose default action ends a process ends the command
// even so, as it would outside a jail.
func (j *Jail) Signal(pid int, sig syscall.Signal) error {
	conn, err := dial(j.socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	var r reply
	if err := roundTrip(conn, request{Op: opSignal, Pid: pid, Signal: int(sig)}, &r); err != nil {
		return fmt.Errorf("jail: signalling command %d: %w", pid, err)
	}
	return nil
}

// waitCopiers lets the output copiers finish, giving up after outputGrace.
func waitCopiers(wg *sync.WaitGroup, readEnds []*os.File) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(outputGrace):
		for _, r := range readEnds {
			r.Close()
		}
		<-done
	}
}

// dupFile gives the command its own descriptor so that sending and closing
// it leaves the caller's file open.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("jail: passing %s to the command: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
