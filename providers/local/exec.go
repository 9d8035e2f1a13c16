package local

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

// waitDelay bounds how long a finished command's output pipes may stay open
// (a descriptor passed to another command, or, without a pid namespace,
// a background child): after that the call returns with what the pipes
// held, and says that output was cut.
const waitDelay = 200 * time.Millisecond

func (p *Provider) Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error) {
	m, err := p.load(id)
	if err != nil {
		return providers.ExecResult{}, err
	}
	if err := providers.ValidateEnv(req.Env); err != nil {
		return providers.ExecResult{}, err
	}
	dir, err := p.cwd(id, req.Cwd)
	if err != nil {
		return providers.ExecResult{}, err
	}
	j, err := p.jailOf(ctx, m)
	if err != nil {
		return providers.ExecResult{}, err
	}
	c := jail.Cmd{Command: req.Command, Cwd: p.commandCwd(m, dir), Env: commandEnv(m, req.Env)}

	var pipes []*outPipe
	var ours []*os.File // the command's ends, closed once it has them
	defer func() {
		for _, f := range ours {
			f.Close()
		}
	}()
	if req.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return providers.ExecResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
		}
		ours = append(ours, r)
		c.Stdin = r
		go func() { io.Copy(w, req.Stdin); w.Close() }()
	}
	for _, s := range []struct {
		dst io.Writer
		set *io.Writer
	}{{req.Stdout, &c.Stdout}, {req.Stderr, &c.Stderr}} {
		if s.dst == nil {
			continue // the null device
		}
		if s.set == &c.Stderr && sameWriter(req.Stdout, req.Stderr) {
			c.Stderr = c.Stdout // one pipe keeps the two in order
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return providers.ExecResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
		}
		defer r.Close()
		ours = append(ours, w)
		*s.set = w
		dst := s.dst
		pipes = append(pipes, copyPipe(r, func(b []byte) { dst.Write(b) }))
	}

	start := time.Now()
	proc, err := j.Start(c)
	for _, f := range ours {
		f.Close() // the command has its own copies
	}
	ours = nil
	if err != nil {
		finishPipes(0, pipes...)
		return providers.ExecResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
	}
	// Kill on timeout or cancellation: PID 1 ends the command and
	// everything it started.
	var timedOut, cancelled atomic.Bool
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	exited := make(chan struct{})
	go func() {
		select {
		case <-exited:
			return
		case <-timeout:
			timedOut.Store(true)
		case <-ctx.Done():
			cancelled.Store(true)
		}
		proc.Kill()
	}()
	code, err := proc.Wait()
	close(exited)
	cut := finishPipes(waitDelay, pipes...)
	res := providers.ExecResult{Duration: time.Since(start), ExitCode: code, OutputCut: cut}
	switch {
	case cancelled.Load():
		return res, ctx.Err()
	case timedOut.Load():
		res.TimedOut = true
		return res, nil
	case err != nil:
		return res, providers.Errorf(providers.ErrUnavailable, "run command: %w", err)
	}
	return res, nil
}

// sameWriter is a == b without the panic on uncomparable types.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() { recover() }()
	return a == b
}

var cloexecOnce sync.Once

// closeInheritedOnExec marks every descriptor this process inherited
// (beyond stdin, stdout and stderr) close-on-exec. Go marks the ones it
// opens itself, but not those a launcher left open, and those would
// otherwise reach every sandboxed command. Linux only (/proc).
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// exitCode follows the shell convention: 128+n for a death by signal n.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// cwd resolves a working directory inside the sandbox root; it must exist.
func (p *Provider) cwd(id, cwd string) (string, error) {
	root := p.root(id)
	if err := p.disks.ensure(p.base(id), root); err != nil {
		return "", providers.Errorf(providers.ErrUnavailable, "sandbox %s: %w", id, err)
	}
	if cwd == "" {
		return root, nil
	}
	rel, err := p.rel(id, cwd)
	if err != nil {
		return "", err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return "", providers.Errorf(providers.ErrUnavailable, "open sandbox: %w", err)
	}
	defer r.Close()
	fi, err := r.Stat(rel)
	if err != nil {
		return "", fileErr("cwd", cwd, err)
	}
	if !fi.IsDir() {
		return "", providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", cwd)
	}
	// r.Stat followed any symlinks inside the root; resolve the same way on
	// the host so the shell starts where os.Root looked.
	real, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if err != nil || (real != root && !strings.HasPrefix(real, root+string(filepath.Separator))) {
		return "", providers.Errorf(providers.ErrInvalidArgument, "cwd %q leaves the sandbox", cwd)
	}
	return real, nil
}

// killProcessesWhere kills the processes match picks, the process groups
// of their children (a supervisor's command leads one) and their own.
func killProcessesWhere(match func(pid int) bool) {
	for pass := 0; pass < 5; pass++ {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		var found []int
		children := map[int][]int{}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			if ppid := parentPid(pid); ppid > 0 {
				children[ppid] = append(children[ppid], pid)
			}
			if match(pid) {
				found = append(found, pid)
			}
		}
		if len(found) == 0 {
			return
		}
		for _, pid := range found {
			for _, child := range children[pid] {
				killGroupOf(child)
			}
			killGroupOf(pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond) // let the killed go, then look again
	}
}

func killGroupOf(pid int) {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != syscall.Getpgrp() {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// parentPid reads a process's parent from /proc/<pid>/stat, or 0.
func parentPid(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// supervises reports whether pid is a supervisor (see supervise.go) with
// the process directory under, or one below it, open.
func supervises(pid int, under string) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err != nil || !bytes.HasPrefix(cmdline, []byte(supervisorArg0+"\x00")) {
		return false
	}
	fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && (target == under || strings.HasPrefix(target, under+string(filepath.Separator))) {
			return true
		}
	}
	return false
}
