// Package local is the embedded default provider: each sandbox is a directory
// on this machine, commands run with /bin/sh in their own process group, and
// file operations are confined to the sandbox root with os.Root.
//
// It confines files, not processes: a command can read anything the server's
// user can read. Use the docker provider (or a hosted one) for untrusted code.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Name is the registry name.
const Name = "local"

// EnvStateDir names the setting for the directory holding the sandboxes.
const EnvStateDir = "MCP_SANDBOX_STATE_DIR"

func init() {
	providers.Register(Name, providers.Driver{Open: func(ctx context.Context, cfg providers.Config) (providers.Provider, error) {
		dir := cfg.Get(EnvStateDir)
		if dir == "" {
			d, err := DefaultStateDir(cfg.Get)
			if err != nil {
				return nil, err
			}
			dir = d
		}
		p, err := New(dir)
		if err != nil {
			return nil, err
		}
		if cfg.ServerID != "" {
			p.server = cfg.ServerID
		}
		return p, nil
	}})
}

// DefaultStateDir is $XDG_STATE_HOME/mcp-sandbox, or
// $HOME/.local/state/mcp-sandbox, with the variables read through getenv.
func DefaultStateDir(getenv func(string) string) (string, error) {
	if x := getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "mcp-sandbox"), nil
	}
	if home := getenv("HOME"); filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "mcp-sandbox"), nil
	}
	return "", fmt.Errorf("cannot find a state directory (neither XDG_STATE_HOME nor HOME is an absolute path): set %s", EnvStateDir)
}

// Provider is the local driver. Its only state is the directory tree under
// its state dir, so any process pointed at the same dir can serve the same
// sandboxes.
type Provider struct {
	dir    string // <state>/local
	server string // MCP_SANDBOX_SERVER_ID: the sandboxes Reap may touch

	mu sync.Mutex
	// exited wakes waiters when a supervisor this process started ends: a
	// cache, since others' processes are polled.
	exited map[string]chan struct{}
	spare  *supervisor // parked for the next StartProcess
	closed bool
}

// New opens (creating if needed) a local provider under stateDir.
func New(stateDir string) (*Provider, error) {
	if stateDir == "" || !filepath.IsAbs(stateDir) {
		return nil, fmt.Errorf("%s must be an absolute path, got %q", EnvStateDir, stateDir)
	}
	cloexecOnce.Do(closeInheritedOnExec)
	dir := filepath.Join(stateDir, "local")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state directory %s (%v): set %s to a writable directory", dir, err, EnvStateDir)
	}
	return &Provider{dir: dir, server: hostname(), exited: map[string]chan struct{}{}}, nil
}

func (p *Provider) Name() string { return Name }

func (p *Provider) Capabilities() providers.Capabilities {
	return providers.Capabilities{providers.CapStdin, providers.CapKillTree}
}

// Close releases the parked supervisor; running processes are not touched.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.spare != nil {
		p.spare.ctrl.Close() // it exits on end-of-file
		p.spare.ready.Close()
		p.spare = nil
	}
	return nil
}

// meta is stored beside (not inside) the sandbox root, so sandboxed code
// cannot rewrite its own labels.
type meta struct {
	ID        string            `json:"id"`
	Name      string            `json:"name,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Env       map[string]string `json:"env,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Layout of one sandbox: <dir>/<id>/{meta.json,root/,tmp/}.
func (p *Provider) base(id string) string { return filepath.Join(p.dir, id) }
func (p *Provider) root(id string) string { return filepath.Join(p.dir, id, "root") }

func (p *Provider) Create(ctx context.Context, opts providers.CreateOptions) (providers.Sandbox, error) {
	if opts.Image != "" {
		return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument,
			"the local provider has no images; leave image empty (got %q)", opts.Image)
	}
	if err := providers.ValidateEnv(opts.Env); err != nil {
		return providers.Sandbox{}, err
	}
	m := meta{ID: uuid.NewString(), Name: opts.Name, CreatedAt: time.Now().UTC(), Env: opts.Env, Labels: opts.Labels}
	base := p.base(m.ID)
	err := func() error {
		for _, d := range []string{base, filepath.Join(base, "root"), filepath.Join(base, "tmp")} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return writeAtomic(filepath.Join(base, "meta.json"), b)
	}()
	if err != nil {
		os.RemoveAll(base)
		return providers.Sandbox{}, providers.Errorf(providers.ErrUnavailable, "create sandbox: %w", err)
	}
	return p.sandbox(m), nil
}

func (p *Provider) sandbox(m meta) providers.Sandbox {
	return providers.Sandbox{ID: m.ID, Provider: Name, Name: m.Name, Workdir: p.root(m.ID), CreatedAt: m.CreatedAt, Labels: m.Labels}
}

// load reads a sandbox's metadata; unknown and malformed IDs are ErrNotFound,
// and a malformed ID never reaches the file system.
func (p *Provider) load(id string) (meta, error) {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return meta{}, providers.Errorf(providers.ErrNotFound, "sandbox %q not found", id)
	}
	b, err := readRecord(filepath.Join(p.base(id), "meta.json"), maxMetaRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return meta{}, providers.Errorf(providers.ErrNotFound, "sandbox %q not found", id)
	}
	if err != nil {
		return meta{}, providers.Errorf(providers.ErrUnavailable, "read sandbox %s: %w", id, err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, providers.Errorf(providers.ErrUnavailable, "sandbox %s has corrupt metadata: %w", id, err)
	}
	return m, nil
}

func (p *Provider) Get(ctx context.Context, id string) (providers.Sandbox, error) {
	m, err := p.load(id)
	if err != nil {
		return providers.Sandbox{}, err
	}
	return p.sandbox(m), nil
}

func (p *Provider) List(ctx context.Context, match map[string]string) ([]providers.Sandbox, error) {
	ents, err := readDir(p.dir)
	if err != nil {
		return nil, providers.Errorf(providers.ErrUnavailable, "list sandboxes: %w", err)
	}
	var out []providers.Sandbox
	for _, e := range ents {
		m, err := p.load(e.Name())
		if err != nil {
			continue // half-created or foreign entries
		}
		if providers.LabelsMatch(m.Labels, match) {
			out = append(out, p.sandbox(m))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

func (p *Provider) Destroy(ctx context.Context, id string) error {
	// Damaged metadata (sandboxed code can reach it) does not stop the
	// destruction: only a sandbox that is not there does.
	if _, err := p.load(id); errors.Is(err, providers.ErrNotFound) {
		return err
	}
	p.killProcesses(id)
	killSandboxProcesses(id, p.base(id))
	// Remove the metadata first: a half-removed sandbox must read as gone.
	if err := os.Remove(filepath.Join(p.base(id), "meta.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return providers.Errorf(providers.ErrUnavailable, "destroy sandbox %s: %w", id, err)
	}
	err := removeAll(p.base(id))
	if err != nil {
		// A process killed just now may still have been closing a file.
		time.Sleep(50 * time.Millisecond)
		err = removeAll(p.base(id))
	}
	if err != nil {
		return providers.Errorf(providers.ErrUnavailable, "destroy sandbox %s: %w", id, err)
	}
	return nil
}

// removeAll also removes trees that sandboxed code made read-only.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

var _ io.Closer = (*Provider)(nil)
