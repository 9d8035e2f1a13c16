package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// markerVar tags every process a sandbox starts, so Destroy can find the ones
// that outlived their command (a `server &`).
const markerVar = "MCP_SANDBOX_ID"

// waitDelay bounds how long background children (`sleep 1000 &`) may hold a
// finished command's output pipes open: after that the call returns with
// what the pipes held, and says that output was cut.
const waitDelay = 200 * time.Millisecond

// basePath is the PATH commands get; the server's own PATH is not inherited.
const basePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if req.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, req.Timeout)
	}
	defer cancel()

	cmd := exec.CommandContext(runCtx, "/bin/sh", "-c", req.Command)
	cmd.Dir = dir
	cmd.Env = p.environ(m, req.Env)
	cmd.Stdin = req.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole process group, not just the shell, so that children
	// (and their children) cannot outlive a timeout or a cancellation.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Output goes through pipes of our own (see pipes.go), so WaitDelay
	// only bounds the copy of stdin.
	cmd.WaitDelay = waitDelay
	var pipes []*outPipe
	var writeEnds []*os.File
	defer func() {
		for _, f := range writeEnds {
			f.Close()
		}
	}()
	for _, s := range []struct {
		dst io.Writer
		set *io.Writer
	}{{req.Stdout, &cmd.Stdout}, {req.Stderr, &cmd.Stderr}} {
		if s.dst == nil {
			continue // the null device
		}
		if s.set == &cmd.Stderr && sameWriter(req.Stdout, req.Stderr) {
			cmd.Stderr = cmd.Stdout // one pipe keeps the two in order
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return providers.ExecResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
		}
		defer r.Close()
		writeEnds = append(writeEnds, w)
		*s.set = w
		dst := s.dst
		pipes = append(pipes, copyPipe(r, func(b []byte) { dst.Write(b) }))
	}

	start := time.Now()
	err = cmd.Start()
	for _, f := range writeEnds {
		f.Close() // the command has its own copies
	}
	writeEnds = nil
	if err != nil {
		finishPipes(0, pipes...)
		return providers.ExecResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
	}
	err = cmd.Wait()
	cut := finishPipes(waitDelay, pipes...)
	res := providers.ExecResult{Duration: time.Since(start), ExitCode: exitCode(cmd.ProcessState), OutputCut: cut}

	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case runCtx.Err() != nil:
		res.TimedOut = true
		return res, nil
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
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

// environ builds a minimal environment: the server's own variables (API keys
// among them) never reach a sandbox.
func (p *Provider) environ(m meta, extra map[string]string) []string {
	env := map[string]string{
		"PATH":    basePath,
		"HOME":    p.root(m.ID),
		"TMPDIR":  filepath.Join(p.base(m.ID), "tmp"),
		"LANG":    "C.UTF-8",
		"LC_ALL":  "C.UTF-8",
		"TERM":    "dumb",
		"SHELL":   "/bin/sh",
		markerVar: m.ID,
	}
	for k, v := range m.Env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	env[markerVar] = m.ID
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// cwd resolves a working directory inside the sandbox root; it must exist.
func (p *Provider) cwd(id, cwd string) (string, error) {
	root := p.root(id)
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

// killSandboxProcesses kills every process still carrying the sandbox's
// marker (background children of earlier commands), and every supervisor
// holding a directory under the sandbox's base open (its process record,
// wherever sandboxed code moved it in there), with the process groups of
// their children: this needs no record, which sandboxed code can spoil.
// A shell killed mid-fork may have a child the /proc snapshot missed, and
// the group kill reaches it. Passes repeat until one finds nothing. Linux
// only: elsewhere there is no /proc to scan and this does nothing.
func killSandboxProcesses(id, base string) {
	want := []byte(markerVar + "=" + id + "\x00")
	killProcessesWhere(func(pid int) bool {
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		return err == nil && (bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...))) || supervises(pid, base)
	})
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
