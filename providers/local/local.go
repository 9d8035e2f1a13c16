// Package local is the embedded default provider: each sandbox is a directory
// on this machine and a jail (package jail): its own Linux namespaces with
// the server binary as PID 1, Landlock beneath, no network and per-sandbox
// limits, with no daemon and no account. Commands see the directory at
// /workspace; file operations reach it from the host through os.Root.
// Records (metadata, process logs, the jail's socket) live beside the
// directory, where sandboxed code cannot reach them.
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
	"strconv"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

// Name is the registry name.
const Name = "local"

// EnvStateDir names the setting for the directory holding the sandboxes.
const EnvStateDir = "MCP_SANDBOX_STATE_DIR"

// The driver's own settings.
const (
	EnvIsolation = "MCP_SANDBOX_LOCAL_ISOLATION"
	EnvNetwork   = "MCP_SANDBOX_LOCAL_NETWORK"
	EnvPids      = "MCP_SANDBOX_LOCAL_PIDS"
	EnvMemory    = "MCP_SANDBOX_LOCAL_MEMORY"
	EnvCPUs      = "MCP_SANDBOX_LOCAL_CPUS"
	EnvDisk      = "MCP_SANDBOX_LOCAL_DISK"
)

// Settings are the driver's settings, for --help, the README and Config.
var Settings = []providers.Setting{
	{Env: EnvIsolation, Flag: "local-isolation", Usage: "namespaces, landlock or none (default: the strongest this machine gives; the server refuses to start rather than fall to none by itself)"},
	{Env: EnvNetwork, Flag: "local-network", Default: "false", Usage: "give local sandboxes the host's network (off: loopback only)"},
	{Env: EnvPids, Flag: "local-pids", Default: "512", Usage: "process limit per local sandbox (0: none)"},
	{Env: EnvMemory, Flag: "local-memory", Default: "2g", Usage: "memory limit per local sandbox (e.g. 512m, 2g; 0: none); per process when no cgroup can hold it"},
	{Env: EnvCPUs, Flag: "local-cpus", Default: "0", Usage: "CPU limit per local sandbox (e.g. 0.5, 2; 0: none); needs a cgroup"},
	{Env: EnvDisk, Flag: "local-disk", Default: "1g", Usage: "disk space per local sandbox's /workspace, a file system of its own (e.g. 512m, 4g; 0: none); needs a root server"},
}

func init() {
	providers.Register(Name, providers.Driver{Settings: Settings, Open: func(ctx context.Context, cfg providers.Config) (providers.Provider, error) {
		cfg = cfg.WithDefaults(Settings)
		dir := cfg.Get(EnvStateDir)
		if dir == "" {
			d, err := DefaultStateDir(cfg.Get)
			if err != nil {
				return nil, err
			}
			dir = d
		}
		opts, err := parseOptions(cfg)
		if err != nil {
			return nil, err
		}
		p, err := NewWith(dir, opts)
		if err != nil {
			return nil, err
		}
		if cfg.ServerID != "" {
			p.server = cfg.ServerID
		}
		level := p.opts.Isolation
		attrs := []any{"isolation", level, "network", map[bool]string{true: "host", false: "loopback only"}[opts.Network]}
		if level == jail.LevelNone {
			cfg.Logger.Warn("local sandboxes are not isolated: commands run as the server's user, see its files and may reach its secrets", attrs...)
		} else {
			cfg.Logger.Info("local sandboxes", attrs...)
		}
		if opts.Disk > 0 && p.disks.size == 0 {
			cfg.Logger.Warn("local sandboxes' /workspace has no disk limit: commands can fill this machine's disk", "why", p.diskWhy, "set", "--local-disk 0 to silence this")
		}
		if opts.Network {
			cfg.Logger.Warn("local sandboxes have the host's network: commands reach the internet and every service on this machine's loopback")
		}
		return p, nil
	}})
}

// Options say how local sandboxes are confined.
type Options struct {
	// Isolation is the level asked for; empty: the strongest this machine
	// gives, but never none.
	Isolation jail.Level
	Network   bool
	Limits    jail.Limits
	// Disk bounds each sandbox's directory, in bytes (0: no bound), where
	// the machine allows it (see diskSupport).
	Disk int64
}

func parseOptions(cfg providers.Config) (Options, error) {
	var o Options
	switch v := jail.Level(cfg.Get(EnvIsolation)); v {
	case "", jail.LevelNamespaces, jail.LevelLandlock, jail.LevelNone:
		o.Isolation = v
	default:
		return o, cfg.Invalid(EnvIsolation, "namespaces, landlock or none")
	}
	var err error
	if o.Network, err = cfg.Bool(EnvNetwork); err != nil {
		return o, err
	}
	if o.Limits.Processes, err = strconv.Atoi(cfg.Get(EnvPids)); err != nil || o.Limits.Processes < 0 || (o.Limits.Processes > 0 && o.Limits.Processes < 8) {
		return o, cfg.Invalid(EnvPids, "a whole number of processes, at least 8 (0: none)")
	}
	if m := cfg.Get(EnvMemory); m != "0" {
		if o.Limits.Memory, err = units.RAMInBytes(m); err != nil || o.Limits.Memory < 16<<20 {
			return o, cfg.Invalid(EnvMemory, "a size of at least 16m, such as 512m or 2g (0: none)")
		}
	}
	if d := cfg.Get(EnvDisk); d != "0" {
		if o.Disk, err = units.RAMInBytes(d); err != nil || o.Disk < 16<<20 {
			return o, cfg.Invalid(EnvDisk, "a size of at least 16m, such as 512m or 4g (0: none)")
		}
	}
	if o.Limits.CPU, err = strconv.ParseFloat(cfg.Get(EnvCPUs), 64); err != nil || o.Limits.CPU < 0 || o.Limits.CPU > 1024 {
		return o, cfg.Invalid(EnvCPUs, "a number of CPUs such as 0.5 or 2 (0: none)")
	}
	return o, nil
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
	opts   Options
	disks  *disks
	// diskWhy says why sandboxes get no disk limit although one was asked.
	diskWhy string

	jailMu sync.Mutex
	jails  map[string]*jail.Jail // by sandbox: a cache, see jailOf

	mu sync.Mutex
	// exited wakes waiters when a supervisor this process started ends: a
	// cache, since others' processes are polled.
	exited map[string]chan struct{}
	spare  *supervisor // parked for the next StartProcess
	closed bool
}

// New opens (creating if needed) a local provider under stateDir with the
// strongest isolation this machine gives and the default limits.
func New(stateDir string) (*Provider, error) {
	return NewWith(stateDir, Options{Limits: jail.Limits{Processes: 512, Memory: 2 << 30}})
}

// NewWith opens a local provider with the given options. It fails when the
// machine cannot give the isolation asked for, or gives none at all and
// none was not asked for.
func NewWith(stateDir string, opts Options) (*Provider, error) {
	level, err := jail.Available(opts.Isolation)
	if err != nil {
		return nil, err
	}
	opts.Isolation = level
	if stateDir == "" || !filepath.IsAbs(stateDir) {
		return nil, fmt.Errorf("%s must be an absolute path, got %q", EnvStateDir, stateDir)
	}
	cloexecOnce.Do(closeInheritedOnExec)
	dir := filepath.Join(stateDir, "local")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state directory %s (%v): set %s to a writable directory", dir, err, EnvStateDir)
	}
	p := &Provider{dir: dir, server: hostname(), opts: opts, disks: &disks{dir: dir}, jails: map[string]*jail.Jail{}, exited: map[string]chan struct{}{}}
	if opts.Disk > 0 {
		// A sandbox's file system is mounted where its jail sees it only
		// when the jail has a mount namespace of its own.
		if level != jail.LevelNamespaces {
			p.diskWhy = "a disk limit needs isolation namespaces, got " + string(level)
		} else if err := diskSupport(); err != nil {
			p.diskWhy = err.Error()
		} else {
			p.disks.size = opts.Disk
		}
	}
	return p, nil
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
	p.disks.close()
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
	Isolation jail.Isolation    `json:"isolation"`
	HostUID   int               `json:"host_uid"` // owns the files, see owner
	Name      string            `json:"name,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Env       map[string]string `json:"env,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	DiskLimit string            `json:"disk_limit,omitempty"`
}

// Layout of one sandbox: <dir>/<id>/{meta.json,root/,jail/,procs/}.
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
	m := meta{ID: uuid.NewString(), Name: opts.Name, CreatedAt: time.Now().UTC(), Env: opts.Env, Labels: opts.Labels, DiskLimit: p.disks.describe()}
	base := p.base(m.ID)
	err := func() error {
		for _, d := range []string{base, p.root(m.ID)} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
		}
		if err := p.disks.create(base, p.root(m.ID)); err != nil {
			return err
		}
		j, err := p.startJail(ctx, m.ID)
		if err != nil {
			return err
		}
		m.Isolation, m.HostUID = j.Isolation(), j.HostUID()
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return writeAtomic(filepath.Join(base, "meta.json"), b)
	}()
	if err != nil {
		p.endJail(m.ID)
		p.disks.remove(base, p.root(m.ID))
		removeAll(base)
		return providers.Sandbox{}, providers.Errorf(providers.ErrUnavailable, "create sandbox: %w", err)
	}
	return p.sandbox(m), nil
}

func (p *Provider) sandbox(m meta) providers.Sandbox {
	iso := m.Isolation
	network := "loopback only"
	if iso.Network {
		network = "host"
	}
	return providers.Sandbox{ID: m.ID, Provider: Name, Name: m.Name, Workdir: p.workdir(m), DiskLimit: m.DiskLimit, CreatedAt: m.CreatedAt, Labels: m.Labels,
		Isolation: &providers.Isolation{Level: string(iso.Level), Network: network, Limits: iso.Limits}}
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
	// Ending PID 1 ends every command however it detached; then no
	// supervisor is left writing into the records.
	p.endJail(id)
	p.killProcesses(id)
	// Remove the metadata first: a half-removed sandbox must read as gone.
	if err := os.Remove(filepath.Join(p.base(id), "meta.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return providers.Errorf(providers.ErrUnavailable, "destroy sandbox %s: %w", id, err)
	}
	if err := p.disks.remove(p.base(id), p.root(id)); err != nil {
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
