package runloop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// File checks through one channel per devbox. A write moves its upload
// into place and a read checks what it is about to download; as commands,
// each costs an execution (its request, its output, processes started in
// the devbox). Instead the supervisor's helper, already in the devbox for
// commands, runs as "serve -enc b64" in one execution with its stdin
// attached, for the devbox's life: a check is a line sent with send_std_in
// and a line or two back on the execution's stdout stream, and the helper
// answers it in its own process (stat, lstat, place), starting nothing.
// Runloop carries stdin and output as JSON text, so the frames travel as
// base64 lines (supervisor.NewTextChannel).
//
// The channel is a cache. It is opened in the background by the first file
// call, so neither a create nor a first command waits for it, and the
// calls take the execution path until it answers, where the helper cannot
// run, and whenever it broke. Whatever runs in the devbox can kill or stop
// the helper: a check that gets no answer in time, or whose channel ends,
// ends the channel's execution, and the call takes the execution path
// (a place first waits for that end, then finds out whether the helper
// moved the upload before it died: see Provider.place). Another is opened
// on a later call.

// channelRetry is how long after a channel failed to open, or broke, the
// file calls take the execution path before another is opened; it doubles
// with each failure in a row, up to 32 times.
const channelRetry = 10 * time.Second

// channelCheckTimeout bounds one check on the channel: each is a few
// system calls in the devbox, so a check that takes longer found the
// helper stopped (or the API stuck), and the execution path serves.
const channelCheckTimeout = 5 * time.Second

// channelMaxOutput is how much output a channel's execution may gather
// (the API keeps it all) before the channel is replaced by a fresh one.
const channelMaxOutput = 32 << 20

// chanSlot is a devbox's channel, or its opening.
type chanSlot struct {
	mu       sync.Mutex
	c        *fileChannel
	opening  bool
	failedAt time.Time
	fails    int  // failures in a row: each doubles the wait, up to 32 times
	gone     bool // the devbox was destroyed or forgotten
}

// wait is how long after the last failure no channel is opened.
func (s *chanSlot) wait(base time.Duration) time.Duration {
	if s.fails == 0 {
		return 0
	}
	return base << min(s.fails-1, 5)
}

// fileChannel is one open channel.
type fileChannel struct {
	p      *Provider
	slot   *chanSlot
	devbox string
	exec   string
	helper string // the helper's path as it was started: its checks' program
	home   string // where relative paths start
	ch     *supervisor.Channel
	stop   context.CancelFunc // ends the output follower
	output atomic.Int64       // output read so far
	users  int                // checks in flight (slot.mu)
	retire bool               // close once users is 0 (slot.mu)

	endOnce sync.Once
	ended   chan struct{}
	killing atomic.Bool
}

// channel returns the devbox's open channel, counted as in use until
// release, or nil: then it begins opening one in the background unless one
// is opening or failed lately, and the caller takes the execution path.
func (p *Provider) channel(id string) *fileChannel {
	if p.o.NoChannel {
		return nil
	}
	v, _ := p.chans.LoadOrStore(id, &chanSlot{})
	s := v.(*chanSlot)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.c; c != nil {
		select {
		case <-c.ch.Done():
			s.c, s.failedAt = nil, time.Now()
			s.fails++
			go c.kill(context.Background())
		default:
			if c.output.Load() < channelMaxOutput {
				c.users++
				return c
			}
			// Retired while it is idle; the next one starts afresh.
			s.c, c.retire = nil, true
			if c.users == 0 {
				go c.close()
			}
		}
	}
	if s.opening || s.gone || time.Since(s.failedAt) < s.wait(p.channelRetry) {
		return nil
	}
	s.opening = true
	go p.fill(id, s)
	return nil
}

// release ends a use of c that channel began.
func (c *fileChannel) release() {
	c.slot.mu.Lock()
	c.users--
	retire := c.retire && c.users == 0
	c.slot.mu.Unlock()
	if retire {
		c.close()
	}
}

// broke drops c from its slot (a check found it broken or stalled) and
// ends its execution; it returns once that is done.
func (c *fileChannel) broke(ctx context.Context, why error) {
	c.slot.mu.Lock()
	if c.slot.c == c {
		c.slot.c, c.slot.failedAt = nil, time.Now()
		c.slot.fails++
	}
	c.slot.mu.Unlock()
	c.p.log.Info("runloop: the file channel broke; file calls run commands until another opens", "devbox", c.devbox, "err", why)
	c.kill(ctx)
}

func (p *Provider) fill(id string, s *chanSlot) {
	c, err := p.openChannel(id, s)
	s.mu.Lock()
	s.opening = false
	gone := s.gone
	if err != nil {
		s.failedAt = time.Now()
		s.fails++
	} else if !gone {
		s.c, s.fails = c, 0
	}
	s.mu.Unlock()
	switch {
	case errors.Is(err, providers.ErrNotFound):
		p.chans.CompareAndDelete(id, s) // the devbox is gone
	case err != nil:
		p.log.Debug("runloop: file calls run commands: no channel", "devbox", id, "err", err)
	case gone:
		c.close()
	}
}

// openChannel starts the helper serving in the devbox and sees it answer.
func (p *Provider) openChannel(id string, s *chanSlot) (*fileChannel, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, _, ok := supervisor.HelperFile(helperMachine)
	if !ok {
		return nil, errors.New("no helper for the devbox's machine")
	}
	in, err := p.info(ctx, id)
	if err != nil {
		return nil, err
	}
	if state, _ := p.helperState(in); state != helperReady {
		return nil, errors.New("the helper cannot run in this devbox")
	}
	h := in.helperPath(name)
	q := shellQuote(h)
	var ex execView
	body := map[string]any{"command": "[ -x " + q + " ] || chmod 755 " + q + " 2>/dev/null; exec " + q + " serve -enc b64", "attach_stdin": true}
	if err := p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + id + "/execute_async", json: body}, &ex); err != nil {
		return nil, err
	}
	if ex.ExecutionID == "" {
		return nil, errors.New("the API gave the execution no ID")
	}
	c := &fileChannel{p: p, slot: s, devbox: id, exec: ex.ExecutionID, helper: h, home: in.home, ended: make(chan struct{})}
	fctx, stop := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	c.stop = func() { stop(); pr.Close() }
	go c.follow(fctx, pw)
	c.ch = supervisor.NewTextChannel(pr, channelInput{c})
	// The helper proves it serves by answering a first check.
	out, _, code, err := c.check(ctx, "lstat", "/")
	if err == nil {
		if fi, perr := parseStat("/", strings.TrimSpace(out)); code != 0 || perr != nil || fi.Type != providers.TypeDir {
			err = fmt.Errorf("its first check answered exit %d, %q", code, out)
		}
	}
	if err != nil {
		c.kill(ctx)
		return nil, fmt.Errorf("the helper did not serve: %w", err)
	}
	return c, nil
}

func (c *fileChannel) path() string { return "/v1/devboxes/" + c.devbox + "/executions/" + c.exec }

// check runs one of the helper's checks and returns its stdout, stderr and
// exit status. An error is the caller's ctx ending, or the channel
// breaking or getting no answer within channelCheckTimeout.
func (c *fileChannel) check(ctx context.Context, args ...string) (out, errOut string, code int, err error) {
	cctx, cancel := context.WithTimeout(ctx, channelCheckTimeout)
	defer cancel()
	var b bytes.Buffer
	code, errOut, err = c.ch.Run(cctx, c.home, append([]string{c.helper}, args...), nil, &limitedBuffer{buf: &b, left: 64 << 10})
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %v", channelCheckTimeout)
	}
	return b.String(), errOut, code, err
}

// follow hands the execution's stdout to the channel as it comes,
// resuming a cut stream from its offset, until the execution ends.
func (c *fileChannel) follow(ctx context.Context, pw *io.PipeWriter) {
	var offset int64
	fails := 0
	for {
		before := offset
		err := c.p.events(ctx, c.path()+"/stream_stdout_updates", &offset, func(text string) error {
			c.output.Store(offset)
			_, err := io.WriteString(pw, text)
			return err
		})
		switch {
		case ctx.Err() != nil || errors.Is(err, io.ErrClosedPipe):
			pw.CloseWithError(supervisor.ErrChannelClosed)
			return
		case offset > before:
			fails = 0
		}
		if err == nil {
			// The stream ended: the execution did, unless the API ends
			// streams on its own.
			var ex execView
			gctx, cancel := context.WithTimeout(ctx, c.p.o.RequestTimeout)
			gerr := c.p.call(gctx, &request{method: http.MethodGet, path: c.path()}, &ex)
			cancel()
			if gerr != nil || ex.Status == "completed" || ex.ExitStatus != nil {
				pw.CloseWithError(supervisor.ErrChannelClosed)
				return
			}
		} else if fails++; fails > maxReconnects {
			pw.CloseWithError(fmt.Errorf("%w: %v", supervisor.ErrChannelClosed, err))
			return
		}
		if !sleep(ctx, c.p.o.RetryBase<<min(fails, 4)) {
			pw.CloseWithError(supervisor.ErrChannelClosed)
			return
		}
	}
}

// close ends the channel gently: the helper sees the end of its stdin and
// leaves once its checks are done.
func (c *fileChannel) close() {
	c.ch.Close()
	c.stop()
}

// kill ends the channel's execution, and returns once it has ended (or the
// API did not say so in reasonable time): after it, the helper surely does
// nothing more.
func (c *fileChannel) kill(ctx context.Context) {
	c.endOnce.Do(func() {
		go func() {
			defer close(c.ended)
			c.killing.Store(true)
			c.ch.Close()
			c.stop()
			kctx, cancel := detached(ctx)
			defer cancel()
			var ex execView
			err := c.p.call(kctx, &request{method: http.MethodPost, path: c.path() + "/kill", json: map[string]any{"kill_process_group": true}}, &ex)
			if err == nil && ex.Status != "completed" {
				wctx, wcancel := context.WithTimeout(kctx, 10*time.Second)
				err = c.p.longPoll(wctx, c.path()+"/wait_for_status", []string{"completed"}, &ex)
				wcancel()
			}
			if err != nil {
				c.p.log.Warn("runloop: cannot end a file channel's execution", "devbox", c.devbox, "execution", c.exec, "err", err)
			}
		}()
	})
	<-c.ended
}

// channelInput sends what the channel writes (one base64 line a write) as
// the execution's stdin. A failed send is not repeated, since a repeat
// could deliver a line twice: the channel closes instead.
type channelInput struct{ c *fileChannel }

func (in channelInput) Write(b []byte) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), in.c.p.o.RequestTimeout)
	defer cancel()
	if err := in.c.p.call(ctx, &request{method: http.MethodPost, path: in.c.path() + "/send_std_in", json: map[string]any{"text": string(b)}, once: true}, nil); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (in channelInput) Close() error {
	if in.c.killing.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return in.c.p.call(ctx, &request{method: http.MethodPost, path: in.c.path() + "/send_std_in", json: map[string]any{"signal": "EOF"}, once: true}, nil)
}

// dropChannel forgets a devbox's channel: gone stops its follower (the
// devbox is being shut down), else the helper is told to leave.
func (p *Provider) dropChannel(id string, gone bool) {
	v, ok := p.chans.LoadAndDelete(id)
	if !ok {
		return
	}
	s := v.(*chanSlot)
	s.mu.Lock()
	s.gone = true
	c := s.c
	s.c = nil
	s.mu.Unlock()
	switch {
	case c == nil:
	case gone:
		c.killing.Store(true)
		c.ch.Close()
		c.stop()
	default:
		c.close()
	}
}
