package docker

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Commands through one channel per sandbox. An engine exec costs a create,
// an attach and inspects: tens of milliseconds before the command starts.
// Instead the supervisor's helper, uploaded once per sandbox, runs as
// "serve" in one exec attached for the sandbox's life, and starts every
// command the supervisor sends it (supervisor.Channel). The channel is a
// cache: a restarted server opens its own, and wherever none can be had
// (no helper for the machine, a noexec /tmp), or until it is open, the
// engine exec serves.

// channelRetry is how long after a failed open commands use the engine
// exec before the channel is tried again.
const channelRetry = 30 * time.Second

// channelWait is how long a command waits for a channel being opened at
// hand-out before it takes the engine's exec instead.
const channelWait = 2 * time.Second

type channelSlot struct {
	mu       sync.Mutex
	ch       *supervisor.Channel
	opening  bool
	ready    chan struct{} // closed when an opening begun at hand-out ends
	failedAt time.Time
}

// channel returns the sandbox's open channel, or nil while there is none:
// it is opened in the background once the supervisor has found or uploaded
// its helper there (the first process operation does), so that no command
// waits for it, and commands go by engine exec meanwhile. A warm sandbox's
// opens at hand-out (openEarly), and its first commands wait for it: the
// opening costs less than an exec of their own.
func (p *Provider) channel(id string) *supervisor.Channel {
	if p.noChannel {
		return nil
	}
	v, _ := p.channels.LoadOrStore(id, &channelSlot{})
	slot := v.(*channelSlot)
	slot.mu.Lock()
	if slot.opening && slot.ready != nil {
		ready := slot.ready
		slot.mu.Unlock()
		select {
		case <-ready:
		case <-time.After(channelWait):
		}
		slot.mu.Lock()
	}
	defer slot.mu.Unlock()
	if slot.ch != nil {
		select {
		case <-slot.ch.Done():
			slot.ch = nil // ended (the sandbox restarted, or killed it): open another
		default:
			return slot.ch
		}
	}
	helper := p.Supervisor.KnownHelperPath(id)
	if helper == "" || slot.opening || time.Since(slot.failedAt) < channelRetry {
		return nil
	}
	slot.opening = true
	go p.fillSlot(id, slot, helper)
	return nil
}

// openEarly begins opening a sandbox's channel before any command asks
// (a warm sandbox's, whose helper is in place), and returns the opening to
// run; commands wait for it meanwhile.
func (p *Provider) openEarly(id string) (open func()) {
	helper := p.Supervisor.KnownHelperPath(id)
	if p.noChannel || helper == "" {
		return func() {}
	}
	slot := &channelSlot{opening: true, ready: make(chan struct{})}
	p.channels.Store(id, slot)
	return func() { p.fillSlot(id, slot, helper) }
}

// channelOpen says whether the sandbox has an open channel, without
// waiting or opening one.
func (p *Provider) channelOpen(id string) bool {
	v, ok := p.channels.Load(id)
	if !ok {
		return false
	}
	slot := v.(*channelSlot)
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.ch == nil {
		return false
	}
	select {
	case <-slot.ch.Done():
		return false
	default:
		return true
	}
}

// fillSlot opens a channel for the slot.
func (p *Provider) fillSlot(id string, slot *channelSlot, helper string) {
	ch, err := p.openChannel(id, helper)
	slot.mu.Lock()
	defer slot.mu.Unlock()
	slot.opening = false
	if slot.ready != nil {
		close(slot.ready)
		slot.ready = nil
	}
	if err != nil {
		slot.failedAt = time.Now()
		p.log.Debug("commands go through the engine's exec", "sandbox", id[:min(12, len(id))], "reason", err)
		return
	}
	if cur, ok := p.channels.Load(id); !ok || cur != slot {
		ch.Close() // the sandbox was destroyed meanwhile
		return
	}
	slot.ch = ch
}

func (p *Provider) openChannel(id, helper string) (*supervisor.Channel, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := p.box(ctx, id)
	if err != nil {
		return nil, err
	}
	// The helper's environment is every command's: a warm sandbox's env
	// (its claim's) goes on it.
	created, err := p.cli.ExecCreate(ctx, id, client.ExecCreateOptions{
		Cmd: []string{helper, "serve"}, WorkingDir: b.workdir, Env: envList(b.env), AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return nil, err
	}
	att, err := p.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		var errOut limitedBuffer
		_, err := stdcopy.StdCopy(pw, &errOut, att.Reader)
		if s := strings.TrimSpace(errOut.String()); s != "" {
			p.log.Debug("the sandbox's channel said", "sandbox", id[:12], "stderr", s)
		}
		pw.CloseWithError(err)
		att.Close()
	}()
	return supervisor.NewChannel(pr, &attachedStdin{att.HijackedResponse}), nil
}

// attachedStdin is the channel's way in: closing it ends the helper's
// stdin, which lets it finish what it runs and leave.
type attachedStdin struct{ att client.HijackedResponse }

func (a *attachedStdin) Write(b []byte) (int, error) { return a.att.Conn.Write(b) }
func (a *attachedStdin) Close() error {
	a.att.CloseWrite()
	return nil
}

// closeChannel forgets a sandbox's channel (it is being destroyed).
func (p *Provider) closeChannel(id string) {
	if v, ok := p.channels.LoadAndDelete(id); ok {
		slot := v.(*channelSlot)
		slot.mu.Lock()
		if slot.ch != nil {
			slot.ch.Close()
		}
		slot.mu.Unlock()
	}
}

func (p *Provider) closeChannels() {
	p.channels.Range(func(k, _ any) bool {
		p.closeChannel(k.(string))
		return true
	})
}

// runOnChannel runs argv through the sandbox's channel; ok is false when
// there is none, and the caller uses the engine's exec.
func (p *Provider) runOnChannel(ctx context.Context, id, wd string, argv []string, stdin io.Reader, stdout io.Writer) (code int, errOut string, ok bool, err error) {
	ch := p.channel(id)
	if ch == nil {
		return 0, "", false, nil
	}
	code, errOut, err = ch.Run(ctx, wd, argv, stdin, stdout)
	if errors.Is(err, supervisor.ErrChannelClosed) {
		// The command's fate is unknown: never run it twice. Say whether
		// the sandbox is gone, or what became of the channel.
		if _, gerr := p.Get(context.WithoutCancel(ctx), id); errors.Is(gerr, providers.ErrNotFound) {
			return -1, "", true, gerr
		}
		return -1, "", true, providers.Errorf(providers.ErrUnavailable, "run command: %v (was the helper killed from inside the sandbox?); try again", err)
	}
	if err != nil && ctx.Err() == nil {
		err = providers.Errorf(providers.ErrUnavailable, "run command: %v", err)
	}
	return code, errOut, true, err
}
