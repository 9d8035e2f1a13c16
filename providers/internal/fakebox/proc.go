package fakebox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// BasePath is the PATH commands get; the fake's own environment (and its
// secrets) never reaches them.
const BasePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// markerVar tags every process a sandbox starts, so that killing the
// sandbox finds those that left their process group. Test code is trusted
// not to remove it; real sandboxes are VMs or containers.
const markerVar = "FAKEBOX_SANDBOX"

// waitDelay bounds how long background children may hold a finished
// command's output open before its streams end.
const waitDelay = 200 * time.Millisecond

// Spec is a command to start.
type Spec struct {
	// Argv is the program and its arguments (["/bin/sh", "-c", "..."]).
	Argv []string
	// Cwd is absolute or relative to Home; empty means Home.
	Cwd string
	// Env adds to the sandbox's environment.
	Env map[string]string
	// Stdin makes Proc.Stdin a pipe to the command; otherwise it reads
	// end-of-file.
	Stdin bool
	// Stdout and Stderr receive output as it comes; nil discards.
	Stdout, Stderr io.Writer
	// Tag is the vendor's name for the process, if it has one.
	Tag string
}

// Exit is how a process ended.
type Exit struct {
	// Code is the exit status, or -1 after a signal.
	Code int
	// Signal is the signal that ended the process, or 0.
	Signal syscall.Signal
	// Status reads like "exit status 3" or "signal: killed".
	Status string
}

// Proc is a running (or finished) command.
type Proc struct {
	PID     int
	Spec    Spec
	Started time.Time
	// Stdin is the command's standard input when Spec.Stdin was set.
	Stdin io.WriteCloser

	done chan struct{}
	exit Exit
}

// Done is closed once the command ended and its output was delivered.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait returns how the command ended, once it has.
func (p *Proc) Wait() Exit {
	<-p.done
	return p.exit
}

// Signal signals the process group, so the command's children get it too.
func (p *Proc) Signal(sig syscall.Signal) error { return syscall.Kill(-p.PID, sig) }

// Environ is the environment a command gets: a minimal base, the sandbox's
// variables, then extra.
func (b *Box) Environ(extra map[string]string) []string {
	env := map[string]string{"PATH": BasePath, "HOME": b.Home, "USER": "user", "LOGNAME": "user", "LANG": "C.UTF-8"}
	for k, v := range b.Env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	env[markerVar] = b.ID
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ErrKilled is returned by Start once the sandbox was killed.
var ErrKilled = errors.New("sandbox is shutting down")

// Start starts a command in its own process group.
func (b *Box) Start(spec Spec) (*Proc, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return nil, errors.New("no command given")
	}
	dir := b.Home
	if spec.Cwd != "" {
		_, abs, err := b.Resolve(spec.Cwd)
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("cwd '%s' does not exist or is not a directory", abs)
		}
		dir = abs
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Dir = dir
	cmd.Env = b.Environ(spec.Env)
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = waitDelay
	p := &Proc{Spec: spec, done: make(chan struct{})}
	if spec.Stdin {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.Stdin = w
	}
	b.mu.Lock()
	if b.killed {
		b.mu.Unlock()
		return nil, ErrKilled
	}
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("cannot start %q: %v", spec.Argv[0], err)
	}
	p.PID, p.Started = cmd.Process.Pid, time.Now()
	b.procs[p.PID] = p
	b.mu.Unlock()
	go func() {
		cmd.Wait()
		st := cmd.ProcessState
		p.exit = Exit{Code: st.ExitCode(), Status: st.String()}
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.exit.Signal = ws.Signal()
		}
		b.mu.Lock()
		delete(b.procs, p.PID)
		b.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Run starts a command and waits for it; cancelling ctx kills its process
// group and returns ctx's error with the exit.
func (b *Box) Run(ctx context.Context, spec Spec) (Exit, error) {
	p, err := b.Start(spec)
	if err != nil {
		return Exit{}, err
	}
	select {
	case <-p.Done():
		return p.exit, nil
	case <-ctx.Done():
		p.Signal(syscall.SIGKILL)
		return p.Wait(), ctx.Err()
	}
}

// Proc returns a running process by PID, or nil.
func (b *Box) Proc(pid int) *Proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.procs[pid]
}

// Procs returns the running processes, oldest first.
func (b *Box) Procs() []*Proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*Proc, 0, len(b.procs))
	for _, p := range b.procs {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// Kill ends every process the sandbox started, and refuses new ones.
func (b *Box) Kill() {
	b.mu.Lock()
	b.killed = true
	procs := make([]*Proc, 0, len(b.procs))
	for _, p := range b.procs {
		procs = append(procs, p)
	}
	b.mu.Unlock()
	for _, p := range procs {
		p.Signal(syscall.SIGKILL)
	}
	killMarked(b.ID)
}

// Killed reports whether Kill was called.
func (b *Box) Killed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.killed
}

// killMarked kills every process carrying the sandbox's marker: those that
// left their process group.
func killMarked(id string) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	want := []byte(markerVar + "=" + id + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// lockedWriter serialises writes from a command's two output copiers.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Serialize returns writers for stdout and stderr that never write to w at
// the same time, for fakes that interleave both streams on one connection.
func Serialize(stdout, stderr io.Writer) (io.Writer, io.Writer) {
	mu := new(sync.Mutex)
	return lockedWriter{mu, stdout}, lockedWriter{mu, stderr}
}
