package local

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

// A background process is run by a supervisor: this same binary, started
// again with superviseVar set, in a session of its own, so the process and
// everything about it outlive the server that started it. In "start" mode
// (StartProcess) it is started ahead of need and parks until the server
// writes a process directory to fd 4; then it starts the command, owns its
// pipes, writes the output logs, forwards stdin and records the exit
// status. In "adopt" mode (a RunProcess that outlived its wait) it takes
// over the output pipes of a command the server started (fds 5 and 6),
// while the server, the command's parent, records the exit status.
// All a supervisor knows is in the directory:
//
//	.             flock-ed while someone answers for the process (exclusively
//	              by a start supervisor; shared by a server and its adopter)
//	spec.json     what to run
//	state.json    the command's and the supervisor's pids, once started
//	stdout.N      output log segments (see outlog.go)
//	stderr.N
//	stdin         FIFO of length-prefixed frames, when stdin is kept open
//	stdin.closed  present once end-of-file was sent
//	exit.json     how the command ended
const superviseVar = "MCP_SANDBOX_LOCAL_SUPERVISE"

func init() {
	mode := os.Getenv(superviseVar)
	if mode == "" {
		return
	}
	// The inherited descriptors must not leak into the command.
	closeInheritedOnExec()
	ctrl := os.NewFile(4, "ctrl")
	r := bufio.NewReader(ctrl)
	line, err := r.ReadString('\n')
	if err != nil {
		os.Exit(0) // the server closed it, or went away, before needing it
	}
	dir := strings.TrimSuffix(line, "\n")
	if mode == "adopt" || mode == "adopt-jail" {
		var conn *os.File // the command's connection to its jail, when handed over
		if mode == "adopt-jail" {
			conn = os.NewFile(7, "jail")
		}
		os.Exit(adopt(dir, os.NewFile(3, "ready"), r, pollable(5, "stdout"), pollable(6, "stderr"), conn))
	}
	ctrl.Close()
	os.Exit(supervise(dir, os.NewFile(3, "ready")))
}

// pollable wraps an inherited pipe so reads can be interrupted by deadline.
func pollable(fd int, name string) *os.File {
	syscall.SetNonblock(fd, true)
	return os.NewFile(uintptr(fd), name)
}

// adopt supervises a command a server started in the foreground and
// handed over: it goes on writing the output logs from the pipes and, given
// the command's connection to its jail (conn), waits for its exit, enforces
// its timeout and records how it ended. (Without conn the command had
// exited already: the server says so on ctrl, and records the exit.) Then,
// as for a started command, children that still hold the pipes get
// waitDelay, and what the pipes hold then is kept.
func adopt(dir string, ready *os.File, ctrl *bufio.Reader, outR, errR, conn *os.File) int {
	fail := func(err error) int {
		fmt.Fprintf(ready, "%v\n", err)
		return 1
	}
	var spec procSpec
	var st procState
	if err := readJSON(filepath.Join(dir, "spec.json"), &spec); err != nil {
		return fail(err)
	}
	if err := readJSON(filepath.Join(dir, "state.json"), &st); err != nil {
		return fail(err)
	}
	lock, err := openDir(dir)
	if err != nil {
		return fail(err)
	}
	if err := flockWithin(lock, syscall.LOCK_SH, lockWait); err != nil {
		return fail(err)
	}
	st.Supervisor = os.Getpid()
	if err := writeJSON(filepath.Join(dir, "state.json"), st); err != nil {
		return fail(err)
	}
	var pipes []*outPipe
	var logs []*outWriter
	for _, s := range []struct {
		name string
		r    *os.File
	}{{"stdout", outR}, {"stderr", errR}} {
		w, err := resumeOutWriter(dir, s.name, spec.OutputLimit)
		if err != nil {
			return fail(err)
		}
		logs = append(logs, w)
		pipes = append(pipes, copyPipe(s.r, func(b []byte) { w.Write(b) }))
	}
	var proc *jail.Process
	if conn != nil {
		if proc, err = jail.Resume(conn, spec.Command); err != nil {
			return fail(err)
		}
	}
	fmt.Fprintln(ready, "ok")
	ready.Close()
	if proc == nil {
		if line, _ := ctrl.ReadString('\n'); line == "exited\n" {
			finishPipes(waitDelay, pipes...)
		} else {
			// The server went away: the copies run until the pipes close.
			for _, o := range pipes {
				<-o.done
			}
		}
		for _, w := range logs {
			w.Close()
		}
		return 0
	}
	var timedOut atomic.Bool
	if spec.Timeout > 0 {
		time.AfterFunc(time.Until(spec.CreatedAt.Add(spec.Timeout)), func() {
			timedOut.Store(true)
			proc.Kill()
		})
	}
	code, err := proc.Wait()
	finishPipes(waitDelay, pipes...)
	for _, w := range logs {
		w.Close()
	}
	if err != nil {
		return 1 // no exit to tell: the record reads as ended, code unknown
	}
	ex := procExit{ExitCode: code, TimedOut: timedOut.Load() && code == 128+int(syscall.SIGKILL), EndedAt: time.Now().UTC()}
	if err := writeJSON(filepath.Join(dir, "exit.json"), ex); err != nil {
		return 1
	}
	return 0
}

type procSpec struct {
	Command     string        `json:"command"`
	Dir         string        `json:"dir"`    // as the command sees it
	Socket      string        `json:"socket"` // the sandbox's jail
	Env         []string      `json:"env"`
	Stdin       []byte        `json:"stdin,omitempty"`
	OpenStdin   bool          `json:"open_stdin,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	OutputLimit int64         `json:"output_limit"`
	CreatedAt   time.Time     `json:"created_at"`
}

type procState struct {
	Pid        int       `json:"pid"` // in the sandbox's jail (see jail.Jail.Signal)
	Supervisor int       `json:"supervisor"`
	StartedAt  time.Time `json:"started_at"`
}

type procExit struct {
	ExitCode int       `json:"exit_code"`
	TimedOut bool      `json:"timed_out,omitempty"`
	EndedAt  time.Time `json:"ended_at"`
}

// maxFrame keeps each stdin frame (4-byte length + data) within PIPE_BUF,
// so frame writes are atomic: a writer that gives up leaves no half frame.
const maxFrame = 4096

// supervise runs the process described in dir and returns the supervisor's
// exit code. It reports "ok" or the start error on ready, then closes it.
func supervise(dir string, ready *os.File) int {
	fail := func(err error) int {
		fmt.Fprintf(ready, "%v\n", err)
		return 1
	}
	var spec procSpec
	if err := readJSON(filepath.Join(dir, "spec.json"), &spec); err != nil {
		return fail(fmt.Errorf("read spec: %w", err))
	}
	// The lock is on the directory itself: one file fewer to create.
	lock, err := openDir(dir)
	if err != nil {
		return fail(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fail(fmt.Errorf("lock: %w", err))
	}
	j, err := jail.Attach(spec.Socket)
	if err != nil {
		return fail(err)
	}
	c := jail.Cmd{Command: spec.Command, Cwd: spec.Dir, Env: spec.Env}
	var logs [2]*outWriter
	var readEnds, writeEnds [2]*os.File
	for i, name := range []string{"stdout", "stderr"} {
		logs[i] = newOutWriter(dir, name, spec.OutputLimit)
		if readEnds[i], writeEnds[i], err = os.Pipe(); err != nil {
			return fail(err)
		}
	}
	c.Stdout, c.Stderr = writeEnds[0], writeEnds[1]
	var stdin *os.File
	if spec.OpenStdin || len(spec.Stdin) > 0 {
		var r *os.File
		if r, stdin, err = os.Pipe(); err != nil {
			return fail(err)
		}
		defer r.Close()
		c.Stdin = r
	}
	var fifo *os.File
	if spec.OpenStdin {
		name := filepath.Join(dir, "stdin")
		if err := syscall.Mkfifo(name, 0o600); err != nil {
			return fail(fmt.Errorf("stdin fifo: %w", err))
		}
		// Opened read-write, the FIFO never reports end-of-file when a
		// writer closes it; end-of-file is an empty frame instead.
		if fifo, err = os.OpenFile(name, os.O_RDWR, 0); err != nil {
			return fail(err)
		}
	}
	proc, err := j.Start(c)
	writeEnds[0].Close() // the command has its own copies
	writeEnds[1].Close()
	if r, ok := c.Stdin.(*os.File); ok && r != nil {
		r.Close()
	}
	if err != nil {
		return fail(err)
	}
	var pipes []*outPipe
	for i, r := range readEnds {
		w := logs[i]
		pipes = append(pipes, copyPipe(r, func(b []byte) { w.Write(b) }))
	}
	st := procState{Pid: proc.Pid(), Supervisor: os.Getpid(), StartedAt: time.Now().UTC()}
	if err := writeJSON(filepath.Join(dir, "state.json"), st); err != nil {
		proc.Kill()
		return fail(err)
	}
	fmt.Fprintln(ready, "ok")
	ready.Close()

	if stdin != nil {
		go feedStdin(stdin, spec.Stdin, fifo)
	}
	var timedOut atomic.Bool
	if spec.Timeout > 0 {
		time.AfterFunc(spec.Timeout, func() {
			timedOut.Store(true)
			proc.Kill()
		})
	}
	code, _ := proc.Wait()
	finishPipes(waitDelay, pipes...)
	logs[0].Close()
	logs[1].Close()
	ex := procExit{ExitCode: code, TimedOut: timedOut.Load(), EndedAt: time.Now().UTC()}
	if err := writeJSON(filepath.Join(dir, "exit.json"), ex); err != nil {
		return 1
	}
	return 0
}

// feedStdin writes the initial input, then forwards frames from the FIFO
// until an empty frame (end-of-file) or the command stops reading.
func feedStdin(w io.WriteCloser, initial []byte, fifo *os.File) {
	defer w.Close()
	if _, err := w.Write(initial); err != nil || fifo == nil {
		return
	}
	r := bufio.NewReaderSize(fifo, maxFrame)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			return
		}
		if _, err := io.CopyN(w, r, int64(n)); err != nil {
			return
		}
	}
}
