package local

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

var _ providers.ProcessRunner = (*Provider)(nil)

// RunProcess runs a command with this server as its supervisor, keeping
// nothing on disk until it must (see providers.ProcessRunner). The record,
// once made, is the same as StartProcess's; when the command outlives the
// wait, a supervisor adopts its output pipes, while this server, its
// parent, records the exit status when it comes. (Should this server die
// first, the output is still kept but the exit status reads as -1.)
func (p *Provider) RunProcess(ctx context.Context, id string, req providers.RunRequest) (providers.RunResult, error) {
	m, err := p.load(id)
	if err != nil {
		return providers.RunResult{}, err
	}
	if strings.TrimSpace(req.Command) == "" {
		return providers.RunResult{}, providers.Errorf(providers.ErrInvalidArgument, "command is empty")
	}
	if req.OpenStdin {
		return providers.RunResult{}, providers.Errorf(providers.ErrInvalidArgument, "a foreground run cannot keep stdin open; use StartProcess")
	}
	if err := providers.ValidateEnv(req.Env); err != nil {
		return providers.RunResult{}, err
	}
	cwd, err := p.cwd(id, req.Cwd)
	if err != nil {
		return providers.RunResult{}, err
	}
	f := &foreground{p: p, id: id, keepAfter: max(req.KeepAfter, 0), spec: procSpec{
		Command: req.Command, Dir: cwd, Env: p.environ(m, req.Env), Stdin: req.Stdin,
		Timeout: req.Timeout, OutputLimit: req.OutputLimit, CreatedAt: time.Now().UTC(),
	}}
	if f.spec.OutputLimit <= 0 {
		f.spec.OutputLimit = defaultOutputLimit
	}
	return f.run(ctx, req)
}

// foreground is one RunProcess call.
type foreground struct {
	p         *Provider
	id        string
	spec      procSpec
	keepAfter int64
	cmd       *exec.Cmd

	mu      sync.Mutex // guards what follows, shared by both streams' copiers
	streams [2]*fgStream
	proc    string   // the record, once made
	dir     string   //
	lock    *os.File // shared flock on dir while this server answers for the process
}

type fgStream struct {
	name string
	pipe *outPipe
	w    io.Writer // the caller's
	mem  []byte    // everything so far, until the record is made
	log  *outWriter
}

func (f *foreground) run(ctx context.Context, req providers.RunRequest) (providers.RunResult, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return providers.RunResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return providers.RunResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", f.spec.Command)
	cmd.Dir, cmd.Env = f.spec.Dir, f.spec.Env
	cmd.Stdout, cmd.Stderr = outW, errW // files: no copying goroutines in os/exec
	if len(f.spec.Stdin) > 0 {
		cmd.Stdin = strings.NewReader(string(f.spec.Stdin))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return providers.RunResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
	}
	f.cmd = cmd
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	f.streams = [2]*fgStream{{name: "stdout", w: req.Stdout}, {name: "stderr", w: req.Stderr}}
	for i, r := range []*os.File{outR, errR} {
		s := f.streams[i]
		s.pipe = copyPipe(r, func(b []byte) { f.forward(s, b) })
	}
	closePipes := func() {
		outR.Close()
		errR.Close()
	}
	var timedOut bool
	var timeout <-chan time.Time
	if f.spec.Timeout > 0 {
		t := time.NewTimer(f.spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	wait := time.NewTimer(req.Wait)
	defer wait.Stop()
	for {
		select {
		case <-timeout:
			timedOut = true
			syscall.Kill(-pid, syscall.SIGKILL)
			timeout = nil
			continue
		case <-ctx.Done():
			syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
			f.finish()
			closePipes()
			f.mu.Lock()
			if f.dir != "" {
				f.closeLogs()
				removeAll(f.dir)
				f.lock.Close()
			}
			f.mu.Unlock()
			return providers.RunResult{}, ctx.Err()
		case <-exited:
			// Background children may hold the pipes open (`server &`):
			// like Exec, give them waitDelay, then stop reading.
			cut := f.finish()
			closePipes()
			res := providers.RunResult{ExecResult: providers.ExecResult{
				ExitCode: exitCode(cmd.ProcessState), TimedOut: timedOut, Duration: time.Since(start), OutputCut: cut}}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.dir != "" {
				f.closeLogs()
				f.recordExit(res.ExitCode, timedOut)
				res.ProcessID = f.proc
			}
			return res, nil
		case <-wait.C:
			proc, err := f.detach(exited)
			if err != nil {
				syscall.Kill(-pid, syscall.SIGKILL)
				closePipes()
				return providers.RunResult{}, err
			}
			return providers.RunResult{ProcessID: proc, Running: true,
				ExecResult: providers.ExecResult{Duration: time.Since(start), ExitCode: -1}}, nil
		}
	}
}

// forward passes output to the caller and keeps it: in memory until the
// record exists, in its log after.
func (f *foreground) forward(s *fgStream, b []byte) {
	if s.w != nil {
		s.w.Write(b)
	}
	f.keep(s, b)
}

// finish ends both copies once the command has exited (see finishPipes).
func (f *foreground) finish() (cut bool) {
	return finishPipes(waitDelay, f.streams[0].pipe, f.streams[1].pipe)
}

func (f *foreground) keep(s *fgStream, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.log == nil {
		s.mem = append(s.mem, b...)
		if int64(len(s.mem)) <= f.keepAfter {
			return
		}
		if err := f.materialize(); err != nil {
			// Keep streaming to the caller, but stop keeping: memory must
			// stay bounded.
			f.keepAfter = 1<<63 - 1
			for _, s := range f.streams {
				s.mem = nil
			}
		}
		return // materialize wrote mem, b included
	}
	s.log.Write(b)
}

// materialize makes the process record, as StartProcess would, and moves
// what the streams kept in memory into their logs. f.mu is held.
func (f *foreground) materialize() error {
	if f.dir != "" {
		return nil
	}
	proc, dir, err := f.p.newProcDir(f.id)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		removeAll(dir)
		return err
	}
	b, _ := json.Marshal(f.spec)
	if err := writeNew(filepath.Join(dir, "spec.json"), b); err != nil {
		return fail(err)
	}
	lock, err := openDir(dir)
	if err != nil {
		return fail(err)
	}
	if err := flockWithin(lock, syscall.LOCK_SH, lockWait); err != nil {
		lock.Close()
		return fail(err)
	}
	for _, s := range f.streams {
		s.log = newOutWriter(dir, s.name, f.spec.OutputLimit)
		if _, err := s.log.Write(s.mem); err != nil {
			lock.Close()
			return fail(err)
		}
		s.mem = nil
	}
	st := procState{Pid: f.cmd.Process.Pid, StartedAt: f.spec.CreatedAt}
	if err := writeJSON(filepath.Join(dir, "state.json"), st); err != nil {
		lock.Close()
		return fail(err)
	}
	f.proc, f.dir, f.lock = proc, dir, lock
	return nil
}

func (f *foreground) closeLogs() {
	for _, s := range f.streams {
		if s.log != nil {
			s.log.Close()
		}
	}
}

// recordExit writes the exit status and releases this server's lock. f.mu
// is held.
func (f *foreground) recordExit(code int, timedOut bool) {
	ex := procExit{ExitCode: code, TimedOut: timedOut, EndedAt: time.Now().UTC()}
	// Best effort: the directory is gone when the sandbox was destroyed.
	writeJSON(filepath.Join(f.dir, "exit.json"), ex)
	f.lock.Close()
}

// detach hands a command that outlived the wait to a supervisor: its output
// pipes go over, and this server stays its parent to record the exit.
func (f *foreground) detach(exited <-chan struct{}) (string, error) {
	for _, s := range f.streams {
		s.pipe.pause() // the rest stays in the pipe for the supervisor
	}
	f.mu.Lock()
	if err := f.materialize(); err != nil {
		f.mu.Unlock()
		return "", providers.Errorf(providers.ErrUnavailable, "detach command: %w", err)
	}
	f.closeLogs()
	f.mu.Unlock()
	outR, errR := f.streams[0].pipe.r, f.streams[1].pipe.r
	sup, err := spawnSupervisor(outR, errR)
	outR.Close() // the supervisor has its own copies now
	errR.Close()
	if err != nil {
		return "", providers.Errorf(providers.ErrUnavailable, "detach command: %w", err)
	}
	if _, err := io.WriteString(sup.ctrl, f.dir+"\n"); err != nil {
		sup.cmd.Process.Kill()
		return "", providers.Errorf(providers.ErrUnavailable, "detach command: %w", err)
	}
	sup.ready.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(sup.ready).ReadString('\n')
	sup.ready.Close()
	if line != "ok\n" {
		sup.cmd.Process.Kill()
		return "", providers.Errorf(providers.ErrUnavailable, "detach command: supervisor: %s", strings.TrimSpace(line))
	}
	f.p.mu.Lock()
	f.p.exited[f.dir] = make(chan struct{})
	wake := f.p.exited[f.dir]
	f.p.mu.Unlock()
	go func() {
		// The timeout runs from the start. The adopting supervisor enforces
		// it too (for when this server is gone), so whichever kills first,
		// a SIGKILL at or past the deadline is the timeout.
		var timeout <-chan time.Time
		deadline := f.spec.CreatedAt.Add(f.spec.Timeout)
		if f.spec.Timeout > 0 {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-timeout:
			syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		case <-exited:
		}
		code := exitCode(f.cmd.ProcessState)
		timedOut := f.spec.Timeout > 0 && code == 128+int(syscall.SIGKILL) && !time.Now().Before(deadline)
		// Tell the supervisor, then wait for it to flush what the command
		// wrote: the exit record must not come before the output.
		fmt.Fprintln(sup.ctrl, "exited")
		sup.ctrl.Close()
		select {
		case <-sup.exited:
		case <-time.After(waitDelay + 5*time.Second):
		}
		f.mu.Lock()
		f.recordExit(code, timedOut)
		f.mu.Unlock()
		f.p.mu.Lock()
		delete(f.p.exited, f.dir)
		f.p.mu.Unlock()
		close(wake)
	}()
	return f.proc, nil
}
