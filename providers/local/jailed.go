package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

// Every command of a sandbox runs in its jail, started by the jail's PID 1
// on request over a socket in <base>/jail. PID 1 outlives the server that
// started it, so a restarted server (or a supervisor) reaches a sandbox's
// commands through that socket.

func (p *Provider) socketDir(id string) string { return filepath.Join(p.base(id), "jail") }

// startJail starts the sandbox's PID 1 with the provider's options.
func (p *Provider) startJail(ctx context.Context, id string) (*jail.Jail, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.disks.ensure(p.base(id), p.root(id)); err != nil {
		return nil, err
	}
	j, _, err := jail.Start(ctx, jail.Options{
		Dir: p.root(id), SocketDir: p.socketDir(id), Network: p.opts.Network, Limits: p.opts.Limits,
		Level: p.opts.Isolation, MinLevel: p.opts.Isolation,
	})
	if err != nil {
		return nil, err
	}
	p.jailMu.Lock()
	p.jails[id] = j
	p.jailMu.Unlock()
	return j, nil
}

// jailOf returns the sandbox's jail: the one this server holds, else the
// live PID 1 at its socket (started by an earlier server), else a new PID 1
// for the directory when the old one is gone (the machine restarted): the
// files are kept, the commands that ran are not.
func (p *Provider) jailOf(ctx context.Context, m meta) (*jail.Jail, error) {
	p.jailMu.Lock()
	j := p.jails[m.ID]
	p.jailMu.Unlock()
	if j != nil {
		return j, nil
	}
	if j, err := jail.Attach(filepath.Join(p.socketDir(m.ID), jail.SocketName)); err == nil {
		p.jailMu.Lock()
		if held := p.jails[m.ID]; held != nil {
			j = held
		} else {
			p.jails[m.ID] = j
		}
		p.jailMu.Unlock()
		return j, nil
	}
	j, err := p.startJail(ctx, m.ID)
	if err != nil {
		return nil, providers.Errorf(providers.ErrUnavailable, "sandbox %s: restarting its jail: %w", m.ID, err)
	}
	return j, nil
}

// endJail ends the sandbox's PID 1, and with it every command in the
// sandbox however it detached.
func (p *Provider) endJail(id string) {
	p.jailMu.Lock()
	j := p.jails[id]
	delete(p.jails, id)
	p.jailMu.Unlock()
	if j == nil {
		var err error
		if j, err = jail.Attach(filepath.Join(p.socketDir(id), jail.SocketName)); err != nil {
			return // no PID 1 answers there
		}
	}
	j.Close()
}

// workdir is the sandbox directory as its commands see it.
func (p *Provider) workdir(m meta) string {
	if m.Isolation.Level == jail.LevelNamespaces {
		return jail.Workspace
	}
	return p.root(m.ID)
}

// commandEnv is what a command adds to the minimal environment its jail
// gives (PATH, HOME, TMPDIR, locale): the sandbox's variables, then the
// call's. The server's own variables never reach a sandbox.
func commandEnv(m meta, extra map[string]string) []string {
	env := map[string]string{}
	for k, v := range m.Env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// commandCwd maps a working directory resolved on the host (see cwd) to
// the path commands see.
func (p *Provider) commandCwd(m meta, hostDir string) string {
	root := p.root(m.ID)
	if m.Isolation.Level != jail.LevelNamespaces {
		return hostDir
	}
	rel := strings.TrimPrefix(hostDir, root)
	return jail.Workspace + rel
}

// inputPipe gives a command data on a pipe of its own; the copy ends when
// the data does or the command stops reading.
func inputPipe(data []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		w.Write(data)
		w.Close()
	}()
	return r, nil
}

var _ providers.Describer = (*Provider)(nil)

// Isolation is what the provider's sandboxes get; each sandbox's own (from
// its jail, with how each limit holds) is in its Sandbox.
func (p *Provider) Isolation() providers.Isolation {
	iso := providers.Isolation{Level: string(p.opts.Isolation), Network: "loopback only"}
	if p.opts.Network {
		iso.Network = "host"
	}
	l := p.opts.Limits
	var parts []string
	if l.Processes > 0 {
		parts = append(parts, fmt.Sprintf("processes %d", l.Processes))
	}
	if l.Memory > 0 {
		parts = append(parts, "memory "+units.BytesSize(float64(l.Memory)))
	}
	if l.CPU > 0 {
		parts = append(parts, fmt.Sprintf("cpus %g", l.CPU))
	}
	iso.Limits = strings.Join(parts, ", ")
	return iso
}
