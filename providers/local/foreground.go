package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

var _ providers.ProcessRunner = (*Provider)(nil)

// RunProcess runs a command with this server as its supervisor, keeping
// nothing on disk until it must (see providers.ProcessRunner). The record,
// once made, is the same as StartProcess's; when the command outlives the
// wait, a supervisor adopts it (its output pipes and its connection to the
// jail) and records its exit, so that it outlives this server.
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
	j, err := p.jailOf(ctx, m)
	if err != nil {
		return providers.RunResult{}, err
	}
	f := &foreground{p: p, id: id, jail: j, keepAfter: max(req.KeepAfter, 0), spec: procSpec{
		Command: req.Command, Dir: p.commandCwd(m, cwd), Env: commandEnv(m, req.Env), Stdin: req.Stdin,
		Socket:  j.Socket(),
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
	jail      *jail.Jail
	proc      *jail.Process
	code      int   // the exit code, once exited is closed
	waitErr   error // why the exit code is not known, once exited is closed

	mu      sync.Mutex // guards what follows, shared by both streams' copiers
	streams [2]*fgStream
	record  string   // the record's process ID, once made
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
	c := jail.Cmd{Command: f.spec.Command, Cwd: f.spec.Dir, Env: f.spec.Env, Stdout: outW, Stderr: errW}
	if len(f.spec.Stdin) > 0 {
		in, err := inputPipe(f.spec.Stdin)
		if err != nil {
			outR.Close()
			errR.Close()
			return providers.RunResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
		}
		defer in.Close()
		c.Stdin = in
	}
	start := time.Now()
	proc, err := f.jail.Start(c)
	outW.Close() // the command has its own copies
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return providers.RunResult{}, providers.Errorf(providers.ErrUnavailable, "start command: %w", err)
	}
	f.proc = proc
	exited := make(chan struct{})
	go func() {
		code, err := proc.Wait()
		if errors.Is(err, jail.ErrHandedOff) {
			return // the adopting supervisor waits for it now
		}
		f.code, f.waitErr = code, err
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
			proc.Kill()
			timeout = nil
			continue
		case <-ctx.Done():
			proc.Kill()
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
				ExitCode: f.code, TimedOut: timedOut, Duration: time.Since(start), OutputCut: cut}}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.dir != "" {
				f.closeLogs()
				f.recordExit(res.ExitCode, timedOut)
				res.ProcessID = f.record
			}
			if f.waitErr != nil {
				// Not an exit code: say so rather than report -1 as one.
				kept := "its output so far was delivered"
				if res.ProcessID != "" {
					kept = "its output is kept as process " + res.ProcessID
				}
				return res, providers.Errorf(providers.ErrUnavailable, "run command: its exit status was lost (%v); %s", f.waitErr, kept)
			}
			return res, nil
		case <-wait.C:
			record, err := f.detach(exited)
			if err != nil {
				proc.Kill()
				closePipes()
				return providers.RunResult{}, err
			}
			return providers.RunResult{ProcessID: record, Running: true,
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
	st := procState{Pid: f.proc.Pid(), StartedAt: f.spec.CreatedAt}
	if err := writeJSON(filepath.Join(dir, "state.json"), st); err != nil {
		lock.Close()
		return fail(err)
	}
	f.record, f.dir, f.lock = proc, dir, lock
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
// pipes and its connection to the jail go over, and the supervisor records
// the exit. (A command that exited just now stays this server's to record.)
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
	conn, done, err := f.proc.Handoff()
	if err != nil {
		return "", providers.Errorf(providers.ErrUnavailable, "detach command: %w", err)
	}
	adopt := []*os.File{f.streams[0].pipe.r, f.streams[1].pipe.r}
	if !done {
		adopt = append(adopt, conn)
	}
	sup, err := spawnSupervisor(adopt...)
	for _, f := range adopt {
		f.Close() // the supervisor has its own copies now
	}
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
		if done {
			// It exited in between: tell the supervisor, then wait for it
			// to flush what the command wrote: the exit record must not
			// come before the output.
			<-exited
			fmt.Fprintln(sup.ctrl, "exited")
		}
		sup.ctrl.Close()
		<-sup.exited
		f.mu.Lock()
		if done {
			f.recordExit(f.code, false)
		} else {
			f.lock.Close() // the supervisor answers for the process
		}
		f.mu.Unlock()
		f.p.mu.Lock()
		delete(f.p.exited, f.dir)
		f.p.mu.Unlock()
		close(wake)
	}()
	return f.record, nil
}
