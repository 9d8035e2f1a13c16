package jail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
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

	conn, err := dial(j.socket)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	fds := make([]int, len(passed))
	for i, f := range passed {
		fds[i] = int(f.Fd())
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := conn.WriteMsgUnix(mustJSON(req), oob, nil); err != nil {
		return -1, fmt.Errorf("jail: sending the command to PID 1: %w", err)
	}
	for _, f := range passed {
		f.Close()
	}
	passed = nil

	var r reply
	if err := readReply(conn, &r); err != nil {
		return -1, fmt.Errorf("jail: starting %q: %w", argv[0], err)
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
		conn.WriteMsgUnix(mustJSON(request{Op: opKill}), nil, nil)
	}()
	err = readReply(conn, &r)
	close(exited)
	if err != nil {
		return -1, fmt.Errorf("jail: waiting for %q: %w", argv[0], err)
	}
	waitCopiers(&copiers, readEnds)
	killMu.Lock()
	defer killMu.Unlock()
	return r.Code, killedBy
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
