package helper

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// serve is one long-lived channel from the driver into the sandbox: it
// starts commands and streams their output back over its own stdin and
// stdout, so that a command costs a process start instead of a round of
// the engine's exec API. Frames go both ways as
//
//	kind (1 byte) | stream (uint32, big-endian) | length (uint32) | payload
//
// From the driver: 'r' runs a command (payload: the directory, then each
// argument, each ended by NUL), 'i' is data for its stdin, 'c' closes its
// stdin, and 'a' abandons it: its output pipes are closed, so that it
// meets a broken pipe at its next write, as a command whose exec is
// dropped does. To the driver: 'o' and 'e' carry its output, 'x' its exit
// status (decimal), 'f' why it could not start. serve ends at the end of
// its stdin, once the commands it runs have ended.
//
// A run request whose program is the helper itself (by the path it was
// started as) in one of its modes start, run, stat, lstat or place is done
// in this process (startHere, fileHere), starting nothing.
//
// "serve -enc b64" carries the frames as base64 lines both ways (lines.go),
// for a transport that carries only text. It makes no spare supervisor up
// front: a driver that uses such a channel for its file checks may never
// start a process through it; the first start or run makes one.

// Frame kinds.
const (
	FrameRun     = 'r'
	FrameStdin   = 'i'
	FrameClose   = 'c'
	FrameAbandon = 'a'
	FrameStdout  = 'o'
	FrameStderr  = 'e'
	FrameExit    = 'x'
	FrameFail    = 'f'
)

// MaxFrame bounds a frame's payload either way.
const MaxFrame = 1 << 20

// WriteFrame writes one frame in a single write.
func WriteFrame(w io.Writer, kind byte, stream uint32, payload []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, 9+len(payload)), kind, stream, payload))
	return err
}

// AppendFrame appends one frame to b.
func AppendFrame(b []byte, kind byte, stream uint32, payload []byte) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, stream)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// ReadFrame reads one frame; payloads over MaxFrame are an error.
func ReadFrame(r io.Reader) (kind byte, stream uint32, payload []byte, err error) {
	var h [9]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[5:])
	if n > MaxFrame {
		return 0, 0, nil, errors.New("frame of " + strconv.FormatUint(uint64(n), 10) + " bytes is over the limit")
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, 0, nil, err
	}
	return h[0], binary.BigEndian.Uint32(h[1:]), payload, nil
}

type server struct {
	wmu  sync.Mutex
	out  io.Writer
	runs sync.WaitGroup
	mu   sync.Mutex
	in   map[uint32]*stdinQueue
	gone map[uint32]*atomic.Bool // set when the driver abandons the run
	// spares keeps a process supervisor ready for the next start or run
	// (spare.go); the first is made as the channel opens.
	spares *spares
}

func (s *server) send(kind byte, stream uint32, payload []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	WriteFrame(s.out, kind, stream, payload)
}

func serveMain(args []string) int {
	var in io.Reader = os.Stdin
	var out io.Writer = os.Stdout
	b64 := false
	switch {
	case len(args) == 0:
	case len(args) == 2 && args[0] == "-enc" && args[1] == "b64":
		b64 = true
		in, out = NewLineReader(os.Stdin), LineWriter{W: os.Stdout}
	default:
		os.Stderr.WriteString("usage: serve [-enc b64]\n")
		return 2
	}
	s := &server{out: out, in: map[uint32]*stdinQueue{}, gone: map[uint32]*atomic.Bool{}, spares: newSpares(os.Args[0])}
	if !b64 {
		s.spares.refill()
	}
	for {
		kind, stream, payload, err := ReadFrame(in)
		if err != nil {
			break
		}
		switch kind {
		case FrameRun:
			s.start(stream, payload)
		case FrameStdin, FrameClose, FrameAbandon:
			s.mu.Lock()
			q := s.in[stream]
			if kind != FrameStdin {
				delete(s.in, stream)
			}
			if g := s.gone[stream]; kind == FrameAbandon && g != nil {
				g.Store(true)
			}
			s.mu.Unlock()
			if q != nil {
				q.push(payload, kind != FrameStdin)
			}
		}
	}
	// The driver went away: what runs finishes first (a start it began
	// must not be cut in half), within reason.
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
	return 0
}

// start runs one command, streaming its output back.
func (s *server) start(stream uint32, payload []byte) {
	parts := strings.Split(strings.TrimSuffix(string(payload), "\x00"), "\x00")
	if len(parts) < 2 {
		s.send(FrameFail, stream, []byte("malformed run request"))
		return
	}
	if len(parts) >= 3 && parts[1] == os.Args[0] {
		switch parts[2] {
		case "run", "start":
			s.startHere(stream, parts[2], parts[3:])
			return
		case "stat", "lstat", "place":
			s.fileHere(stream, parts[0], parts[2], parts[3:])
			return
		}
	}
	cmd := exec.Command(parts[1], parts[2:]...)
	cmd.Dir = parts[0]
	gone := &atomic.Bool{}
	cmd.Stdout = &frameOut{s, FrameStdout, stream, gone}
	cmd.Stderr = &frameOut{s, FrameStderr, stream, gone}
	// A child left holding the output (a daemon) does not hold the answer.
	cmd.WaitDelay = time.Second
	q := &stdinQueue{}
	q.cond = sync.NewCond(&q.mu)
	// Fed by a goroutine of ours, not by exec's: Wait must not wait for
	// stdin that the command never reads.
	in, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		s.send(FrameFail, stream, []byte(err.Error()))
		return
	}
	s.mu.Lock()
	s.in[stream] = q
	s.gone[stream] = gone
	s.mu.Unlock()
	go func() {
		io.Copy(in, q)
		in.Close()
	}()
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		err := cmd.Wait()
		s.mu.Lock()
		delete(s.in, stream)
		delete(s.gone, stream)
		s.mu.Unlock()
		q.push(nil, true) // what was not read is dropped
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		} else if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
			code = 126
		}
		s.send(FrameExit, stream, []byte(strconv.Itoa(code)))
	}()
}

// startHere runs the helper's own start or run in this process: the same
// work, without starting the helper again for it. The process it follows
// is watched for this process's life (.follow), which is the channel's.
func (s *server) startHere(stream uint32, mode string, args []string) {
	q := &stdinQueue{}
	q.cond = sync.NewCond(&q.mu)
	gone := &atomic.Bool{}
	s.mu.Lock()
	s.in[stream] = q
	s.gone[stream] = gone
	s.mu.Unlock()
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		out := &frameOut{s, FrameStdout, stream, gone}
		var code int
		if mode == "run" {
			code = runMain(args, q, out, s.spares)
		} else {
			code = startMain(args, q, out, s.spares)
		}
		s.mu.Lock()
		delete(s.in, stream)
		delete(s.gone, stream)
		s.mu.Unlock()
		q.push(nil, true)
		s.send(FrameExit, stream, []byte(strconv.Itoa(code)))
	}()
}

// fileHere does one of the helper's file checks (files.go) in this
// process. It has no stdin, and an abandoned one still finishes: each is
// a few system calls, and a place is all or nothing.
func (s *server) fileHere(stream uint32, dir, mode string, args []string) {
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		gone := &atomic.Bool{}
		code, _ := fileOp(mode, dir, args, &frameOut{s, FrameStdout, stream, gone}, &frameOut{s, FrameStderr, stream, gone})
		s.send(FrameExit, stream, []byte(strconv.Itoa(code)))
	}()
}

// frameOut sends what a command writes as frames of its stream.
type frameOut struct {
	s      *server
	kind   byte
	stream uint32
	gone   *atomic.Bool
}

// errAbandoned ends the copy of an abandoned run's output, which closes
// its pipe.
var errAbandoned = errors.New("abandoned by the driver")

func (f *frameOut) Write(b []byte) (int, error) {
	if f.gone.Load() {
		return 0, errAbandoned
	}
	for rest := b; len(rest) > 0; {
		k := min(len(rest), 64<<10)
		f.s.send(f.kind, f.stream, rest[:k])
		rest = rest[k:]
	}
	return len(b), nil
}

// stdinQueue holds a command's stdin as it comes, so that a command that
// does not read it never stalls the channel.
type stdinQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	bufs   [][]byte
	closed bool
}

func (q *stdinQueue) push(b []byte, closing bool) {
	q.mu.Lock()
	if len(b) > 0 && !q.closed {
		q.bufs = append(q.bufs, b)
	}
	if closing {
		q.closed = true
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *stdinQueue) Read(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.bufs) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.bufs) == 0 {
		return 0, io.EOF
	}
	n := copy(p, q.bufs[0])
	if q.bufs[0] = q.bufs[0][n:]; len(q.bufs[0]) == 0 {
		q.bufs = q.bufs[1:]
	}
	return n, nil
}
