package jail

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Starting the reaper (a Go program: its runtime's start is most of it)
// would cost every command more than the command itself, so PID 1 keeps a
// spare one, started ahead and waiting on its channel, and a reaper whose
// command left nothing running serves the next command too. A command
// that finds no spare (several at once) starts a reaper of its own, as it
// would without the spare: none waits for another.

// handTimeout bounds how long a reaper takes to answer a command handed to
// it: a spare that was stopped, or is stuck, is replaced after that.
const handTimeout = 10 * time.Second

// reaperProc is a reaper PID 1 started, serving one command at a time.
type reaperProc struct {
	pid  int
	ch   *net.UnixConn // SOCK_SEQPACKET to the reaper's channel
	dead chan struct{} // closed once PID 1 reaped it
	ws   syscall.WaitStatus

	mu   sync.Mutex
	gone bool     // it exited: signal it no more (its pid may be reused)
	cur  *command // the command it runs, nil when idle
}

// refused is a request the reaper turned down itself (a missing working
// directory): nothing ran, and the reaper serves on.
type refused string

func (r refused) Error() string { return string(r) }

// startReaper starts a new reaper from the sealed copy, through the
// spawner thread, so that it and its commands are confined as every
// command is.
func (p *pid1) startReaper(memfd *os.File) (*reaperProc, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reaper channel: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "reaper"), os.NewFile(uintptr(pair[1]), "reaper")
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("reaper channel: %w", err)
	}
	// fd 3: the sealed copy, which it closes; fd 4: the channel. Its own
	// environment is empty: a command's never reaches its runtime.
	cmd := &exec.Cmd{Path: "/proc/self/fd/3", Args: []string{reaperName}, Env: []string{}, Dir: "/",
		ExtraFiles: []*os.File{memfd, theirs}, SysProcAttr: p.commandAttr()}
	done := make(chan spawned, 1)
	p.spawn <- spawnReq{cmd: cmd, done: done}
	got := <-done
	if got.err != nil {
		conn.Close()
		return nil, got.err
	}
	cmd = got.cmd
	r := &reaperProc{pid: cmd.Process.Pid, ch: conn.(*net.UnixConn), dead: make(chan struct{})}
	p.mu.Lock()
	p.reapers[r.pid] = true // the orphan reaper leaves it to us
	p.mu.Unlock()
	go p.await(r, cmd)
	return r, nil
}

// await reaps a reaper once it exits. It first marks it and its command
// gone without reaping, so that no signal from then on reaches a process
// that reused the pid.
func (p *pid1) await(r *reaperProc, cmd *exec.Cmd) {
	var info unix.Siginfo
	for unix.Waitid(unix.P_PID, r.pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
	r.mu.Lock()
	r.gone = true
	c := r.cur
	r.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		c.exited = true
		c.mu.Unlock()
	}
	cmd.Wait()
	if cmd.ProcessState != nil {
		r.ws, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
	}
	p.mu.Lock()
	delete(p.reapers, r.pid)
	p.mu.Unlock()
	close(r.dead)
}

// hand gives the reaper a command and waits until it has started it; pid
// is the command's own (0 when it could not be started: its exit status
// says why). An error other than refused means the reaper cannot be used.
func (r *reaperProc) hand(packet []byte, fds []int) (pid int, err error) {
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return 0, errors.New("the reaper has exited")
	}
	// A stopped reaper would hold the command until the timeout.
	syscall.Kill(r.pid, syscall.SIGCONT)
	r.mu.Unlock()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := r.ch.WriteMsgUnix(packet, oob, nil); err != nil {
		return 0, fmt.Errorf("handing the command to the reaper: %w", err)
	}
	r.ch.SetReadDeadline(time.Now().Add(handTimeout))
	defer r.ch.SetReadDeadline(time.Time{})
	msg, err := r.read()
	switch {
	case err != nil:
		return 0, fmt.Errorf("the reaper did not start the command: %w", err)
	case msg[0] == 'S':
		if pid, err := strconv.Atoi(msg[1:]); err == nil {
			return pid, nil
		}
	case msg[0] == 'E':
		return 0, refused(msg[1:])
	case msg[0] == 'T':
		return 0, fmt.Errorf("the reaper's %s changed since it started", msg[1:])
	}
	return 0, fmt.Errorf("the reaper said %q", msg)
}

// exit waits for the command's exit status, and says whether the reaper
// may serve again.
func (r *reaperProc) exit() (code int, reusable bool) {
	msg, err := r.read()
	if err == nil && msg[0] == 'X' {
		n, more, _ := strings.Cut(msg[1:], " ")
		if code, err := strconv.Atoi(n); err == nil {
			return code, more == "1"
		}
	}
	// Killed (the command with it): its own status says.
	r.discard()
	<-r.dead
	switch {
	case r.ws.Signaled():
		return 128 + int(r.ws.Signal()), false
	case r.ws.Exited():
		return r.ws.ExitStatus(), false
	}
	return -1, false
}

func (r *reaperProc) read() (string, error) {
	buf := make([]byte, 512)
	n, _, _, _, err := r.ch.ReadMsgUnix(buf, nil)
	if err == nil && n == 0 {
		err = errors.New("the reaper hung up")
	}
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// discard ends a reaper that is not to be used, with anything it started.
func (r *reaperProc) discard() {
	r.mu.Lock()
	if !r.gone {
		killTree(r.pid)
	}
	r.mu.Unlock()
	r.ch.Close()
}

// setCommand records the command the reaper runs, or nil once it is done.
func (r *reaperProc) setCommand(c *command) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur = c
	if c != nil && r.gone {
		c.exited = true
	}
}

// runUnderReaper hands a command to the spare reaper, or to a new one when
// there is none or it cannot be used (dead or tampered with: it is killed,
// never used). A spare stuck past handTimeout is killed and the command
// fails.
func (p *pid1) runUnderReaper(memfd *os.File, packet []byte, fds []int) (*reaperProc, int, error) {
	for range 3 {
		p.reaperMu.Lock()
		r := p.spare
		p.spare = nil
		p.reaperMu.Unlock()
		spare := r != nil
		if !spare {
			var err error
			if r, err = p.startReaper(memfd); err != nil {
				return nil, 0, err
			}
		}
		pid, err := r.hand(packet, fds)
		var no refused
		switch {
		case err == nil:
			return r, pid, nil
		case errors.As(err, &no):
			p.keepReaper(r)
			return nil, 0, err
		}
		r.discard()
		// A reaper that took too long may have started the command just
		// before it was killed: never start it twice.
		if !spare || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, 0, err
		}
	}
	return nil, 0, errors.New("no reaper would start the command")
}

// keepReaper makes an idle reaper the spare, or lets it go when there is
// one already.
func (p *pid1) keepReaper(r *reaperProc) {
	p.reaperMu.Lock()
	if p.spare == nil {
		p.spare, r = r, nil
	}
	p.reaperMu.Unlock()
	if r != nil {
		r.ch.Close() // it exits on the hang-up
	}
}

// refillReaper starts a spare in the background when there is none and
// none is on its way.
func (p *pid1) refillReaper(memfd *os.File) {
	p.reaperMu.Lock()
	if p.spare != nil || p.refilling || memfd == nil {
		p.reaperMu.Unlock()
		return
	}
	p.refilling = true
	p.reaperMu.Unlock()
	go func() {
		r, err := p.startReaper(memfd)
		p.reaperMu.Lock()
		p.refilling = false
		p.reaperMu.Unlock()
		if err == nil {
			p.keepReaper(r)
		}
	}()
}

// reaperRequest encodes a command for a reaper (see internal/reaper).
func reaperRequest(argv, env []string, cwd string, stdio [3]bool) ([]byte, error) {
	mask := 0
	for i, present := range stdio {
		if present {
			mask |= 1 << i
		}
	}
	fields := append([]string{strconv.Itoa(mask), cwd, strconv.Itoa(len(argv))}, argv...)
	fields = append(fields, env...)
	for _, f := range fields[1:] {
		if strings.IndexByte(f, 0) >= 0 {
			return nil, fmt.Errorf("%q contains a NUL byte, which no command line, environment or path may hold", f)
		}
	}
	return []byte(strings.Join(fields, "\x00")), nil
}
