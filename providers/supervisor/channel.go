package supervisor

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor/internal/helper"
)

// Channel is a driver's end of a long-lived channel into a sandbox: the
// helper run as "HELPER serve" (HelperPath gives HELPER), attached once,
// starts each command the driver sends and streams its output back (see
// internal/helper/serve.go), so that a command costs a process start in
// the sandbox instead of a round of the provider's exec API. Any number of
// commands share it.
type Channel struct {
	w    io.WriteCloser
	wmu  sync.Mutex
	mu   sync.Mutex
	next uint32
	runs map[uint32]*channelRun
	done chan struct{}
	err  error
}

// ErrChannelClosed is a run's error when the channel ended before the
// command did (the sandbox went away, or something in it killed the
// helper): the command's fate is unknown.
var ErrChannelClosed = errors.New("the channel into the sandbox closed before the command ended")

type channelRun struct {
	wmu    sync.Mutex // held while output is written, so an abandoned run's writer is let go cleanly
	stdout io.Writer
	errOut limitedBuffer
	end    chan struct{}
	code   int
	fail   string
}

// NewChannel serves a channel whose frames come from r (the helper's
// stdout) and go to w (its stdin). Close ends it.
func NewChannel(r io.Reader, w io.WriteCloser) *Channel {
	c := &Channel{w: w, runs: map[uint32]*channelRun{}, done: make(chan struct{})}
	go c.read(r)
	return c
}

// Done is closed once the channel is unusable.
func (c *Channel) Done() <-chan struct{} { return c.done }

// Close ends the channel; runs in flight get ErrChannelClosed. The helper
// lets the commands it runs finish.
func (c *Channel) Close() error {
	err := c.w.Close()
	c.shut(ErrChannelClosed)
	return err
}

func (c *Channel) shut(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	for id, r := range c.runs {
		r.fail = "closed"
		close(r.end)
		delete(c.runs, id)
	}
}

// read dispatches the helper's frames. Everything in them comes from inside
// the sandbox: sizes are bounded, unknown streams ignored.
func (c *Channel) read(r io.Reader) {
	for {
		kind, stream, payload, err := helper.ReadFrame(r)
		if err != nil {
			c.shut(ErrChannelClosed)
			return
		}
		c.mu.Lock()
		run := c.runs[stream]
		if run != nil && (kind == helper.FrameExit || kind == helper.FrameFail) {
			delete(c.runs, stream)
		}
		c.mu.Unlock()
		if run == nil {
			continue
		}
		switch kind {
		case helper.FrameStdout:
			run.wmu.Lock()
			if _, err := run.stdout.Write(payload); err != nil {
				run.stdout = io.Discard // a writer that fails loses the output
			}
			run.wmu.Unlock()
		case helper.FrameStderr:
			run.errOut.Write(payload)
		case helper.FrameExit:
			code, err := strconv.Atoi(string(payload))
			if err != nil {
				code = -1
			}
			run.code = code
			close(run.end)
		case helper.FrameFail:
			run.fail = "start: " + strings.ToValidUTF8(string(payload[:min(len(payload), 1024)]), "?")
			close(run.end)
		}
	}
}

func (c *Channel) send(kind byte, stream uint32, payload []byte) error {
	return c.write(helper.AppendFrame(nil, kind, stream, payload))
}

// write sends whole frames in one write; a failed one ends the channel.
func (c *Channel) write(frames []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.w.Write(frames)
	if err != nil {
		go c.Close()
	}
	return err
}

// Run runs argv in dir with stdin (nil for none) as its input and its
// stdout to stdout, and returns its exit status and the start of its
// stderr, as ArgvRunner.RunArgv does. Cancelling ctx abandons the command:
// its output pipes close, as when an exec's attachment is dropped.
func (c *Channel) Run(ctx context.Context, dir string, argv []string, stdin io.Reader, stdout io.Writer) (int, string, error) {
	if len(argv) == 0 {
		return -1, "", errors.New("no command")
	}
	run := &channelRun{stdout: orDiscard(stdout), end: make(chan struct{})}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return -1, "", c.err
	}
	c.next++
	id := c.next
	c.runs[id] = run
	c.mu.Unlock()
	var req strings.Builder
	req.WriteString(dir + "\x00")
	for _, a := range argv {
		req.WriteString(a + "\x00")
	}
	if req.Len() > helper.MaxFrame {
		c.forget(id)
		return -1, "", errors.New("the command line is too long for the channel")
	}
	frames := helper.AppendFrame(nil, helper.FrameRun, id, []byte(req.String()))
	if stdin == nil {
		// No stdin: the close goes in the same write (over a transport
		// where each write is a request, one request).
		frames = helper.AppendFrame(frames, helper.FrameClose, id, nil)
	}
	if err := c.write(frames); err != nil {
		c.forget(id)
		return -1, "", ErrChannelClosed
	}
	if stdin != nil {
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 && c.send(helper.FrameStdin, id, buf[:n]) != nil {
					return
				}
				if err != nil {
					break
				}
			}
			c.send(helper.FrameClose, id, nil)
		}()
	}
	select {
	case <-run.end:
	case <-ctx.Done():
		c.forget(id)
		c.send(helper.FrameAbandon, id, nil)
		run.wmu.Lock()
		run.stdout = io.Discard
		run.wmu.Unlock()
		return -1, "", ctx.Err()
	}
	switch run.fail {
	case "":
		return run.code, run.errOut.String(), nil
	case "closed":
		return -1, "", ErrChannelClosed
	}
	return -1, "", errors.New(run.fail)
}

func (c *Channel) forget(id uint32) {
	c.mu.Lock()
	delete(c.runs, id)
	c.mu.Unlock()
}

// Over a transport that carries only text, the helper serves with "serve
// -enc b64" and each write either way is one base64 line: NewTextChannel
// serves such a channel, r giving the helper's output and w taking its
// input, each write of w to be delivered whole (as one line of stdin).
func NewTextChannel(r io.Reader, w io.WriteCloser) *Channel {
	return NewChannel(helper.NewLineReader(r), helper.LineWriter{W: w})
}

// ErrChannelLine is the reading end's error for a line from the helper that
// is not base64 (or too long): the channel closes.
var ErrChannelLine = helper.ErrLine

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(b []byte) (int, error) {
	if room := 4<<10 - len(l.b); room > 0 {
		l.b = append(l.b, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
