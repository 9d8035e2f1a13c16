// Package docker runs each sandbox as a container on a Docker engine,
// through the Moby Go client. The container is the sandbox: commands run in
// it through one long-lived channel to the supervisor's helper serving in it
// (channel.go), or else the Exec API; files move through the archive (tar)
// API, and
// everything the driver needs to serve a sandbox is on the container itself
// (labels, config), so a restarted server or a second replica can serve it.
// Background processes (Processes, ProcessRunner) live in the container too:
// a shell supervisor keeps each one's output, stdin and exit status in files
// under /tmp (see procscripts.go).
//
// Containers are hardened by default: no network, every capability dropped
// but the few a shell workload needs, no-new-privileges, pids/memory/CPU
// limits, and none of the server's environment.
package docker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/go-connections/tlsconfig"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Name is the registry name.
const Name = "docker"

// Settings, by their environment-variable name.
const (
	EnvImage   = "MCP_SANDBOX_DOCKER_IMAGE"          // default image
	EnvNetwork = "MCP_SANDBOX_DOCKER_NETWORK"        // network to attach; empty means none
	EnvMemory  = "MCP_SANDBOX_DOCKER_MEMORY"         // memory limit, e.g. 512m, 2g
	EnvCPUs    = "MCP_SANDBOX_DOCKER_CPUS"           // CPU limit, e.g. 0.5, 2
	EnvPids    = "MCP_SANDBOX_DOCKER_PIDS"           // process limit
	EnvWorkdir = "MCP_SANDBOX_DOCKER_WORKDIR"        // absolute workdir inside the container
	EnvCapAdd  = "MCP_SANDBOX_DOCKER_CAP_ADD"        // capabilities added back after dropping all; "none" for none
	EnvExpiry  = "MCP_SANDBOX_DOCKER_EXPIRY"         // how long a sandbox is safe from the reaper
	EnvAllowed = "MCP_SANDBOX_DOCKER_ALLOWED_IMAGES" // images beyond the default and the engine's own that may be pulled
	EnvDisk    = "MCP_SANDBOX_DOCKER_DISK"           // disk limit per sandbox, e.g. 1g; none for none
	EnvPool    = "MCP_SANDBOX_DOCKER_WARM_POOL"      // warm containers kept per image; 0 for none
)

// Defaults.
const (
	DefaultImage   = "python:3.12-slim"
	DefaultMemory  = "1g"
	DefaultCPUs    = "1"
	DefaultPids    = "512"
	DefaultWorkdir = "/workspace"
	DefaultDisk    = "1g"
	DefaultPool    = "1"
	// DefaultExpiry is long because a server on another machine cannot
	// tell whether a session it does not own is still live (one on the
	// same machine can: see providers.Liveness).
	DefaultExpiry = 24 * time.Hour
)

// DefaultCapAdd is what a normal shell workload needs after every capability
// is dropped: root in the container can own, chmod and write its files,
// switch user (package managers do) and signal its own processes. Raw
// sockets, mknod, chroot, setfcap and the rest stay dropped.
var DefaultCapAdd = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"}

// Container labels. Everything the driver knows about a sandbox is here.
const (
	labelManaged = "mcp-sandbox.managed" // "true" on every container this driver made
	labelServer  = "mcp-sandbox.server"
	labelName    = "mcp-sandbox.name"
	labelCreated = "mcp-sandbox.created"
	labelExpires = "mcp-sandbox.expires"
	labelWorkdir = "mcp-sandbox.workdir"
	labelDisk    = "mcp-sandbox.disk" // the disk limit, as sandbox_create reports it
	// CreateOptions.Labels are stored under this prefix, so a caller's label
	// can never pose as one of the driver's own.
	userLabelPrefix = "mcp-sandbox.label."
)

// Settings are the driver's settings, for --help, the README and Config.
// The engine's own variables are read as the docker CLI reads them.
var Settings = []providers.Setting{
	{Env: EnvImage, Flag: "docker-image", Default: DefaultImage, Usage: "default image; sandbox_create's image overrides it"},
	{Env: EnvNetwork, Flag: "docker-network", Default: "none", Usage: "network to attach; setting one gives sandboxes network access"},
	{Env: EnvMemory, Flag: "docker-memory", Default: DefaultMemory, Usage: "memory limit per sandbox (e.g. 512m, 2g)"},
	{Env: EnvCPUs, Flag: "docker-cpus", Default: DefaultCPUs, Usage: "CPU limit per sandbox (e.g. 0.5, 2)"},
	{Env: EnvPids, Flag: "docker-pids", Default: DefaultPids, Usage: "process limit per sandbox"},
	{Env: EnvWorkdir, Flag: "docker-workdir", Default: DefaultWorkdir, Usage: "workdir inside the container, owned by the image's user"},
	{Env: EnvCapAdd, Flag: "docker-cap-add", Default: strings.Join(DefaultCapAdd, ","), Usage: "capabilities added back after dropping all; none for none (ALL and SYS_ADMIN are refused)"},
	{Env: EnvDisk, Flag: "docker-disk", Default: DefaultDisk, Usage: "disk limit per sandbox (e.g. 512m, 4g): the storage driver's per-container size where it has one, else in-memory workdir and /tmp of that size with the rest read-only; none for no limit"},
	{Env: EnvPool, Flag: "docker-warm-pool", Default: DefaultPool, Usage: "containers kept started ahead, per image (the default and the first others used), so that sandbox_create takes one at once; 0 for none"},
	{Env: EnvExpiry, Flag: "docker-expiry", Default: DefaultExpiry.String(), Usage: "how long a sandbox is safe from the reaper"},
	{Env: EnvAllowed, Flag: "docker-allowed-images", Usage: "comma-separated image patterns (* matches anything) sandbox_create may pull besides the default image; images already on the engine are always allowed"},
	{Env: "DOCKER_HOST", Usage: "Docker engine address (default: the local socket)"},
	{Env: "DOCKER_API_VERSION", Usage: "Engine API version to use (default: negotiated)"},
	{Env: "DOCKER_CERT_PATH", Usage: "directory with ca.pem, cert.pem and key.pem for a TLS engine"},
	{Env: "DOCKER_TLS_VERIFY", Usage: "verify the engine's TLS certificate (any value but empty turns it on)"},
}

func init() {
	providers.Register(Name, providers.Driver{Settings: Settings, Open: func(ctx context.Context, cfg providers.Config) (providers.Provider, error) {
		return New(ctx, cfg)
	}})
}

// settings is the driver's parsed configuration.
type settings struct {
	image    string
	network  string
	memory   int64
	nanoCPUs int64
	pids     int64
	workdir  string
	capAdd   []string
	expiry   time.Duration
	server   string
	images   providers.ImagePolicy
	disk     int64 // bytes; 0 for no limit
	pool     int   // warm containers per image
}

func parseSettings(cfg providers.Config) (settings, error) {
	s := settings{
		image:   cfg.Get(EnvImage),
		network: cfg.Get(EnvNetwork),
		workdir: cfg.Get(EnvWorkdir),
		server:  cfg.ServerID,
	}
	if s.server == "" {
		s.server = hostname()
	}
	var err error
	if s.memory, err = units.RAMInBytes(cfg.Get(EnvMemory)); err != nil || s.memory < 6<<20 {
		return s, cfg.Invalid(EnvMemory, "use a memory size of at least 6m, such as 512m or 2g")
	}
	cpus, err := strconv.ParseFloat(cfg.Get(EnvCPUs), 64)
	if err != nil || cpus <= 0 || cpus > 1024 {
		return s, cfg.Invalid(EnvCPUs, "use a positive number of CPUs, such as 0.5 or 2")
	}
	s.nanoCPUs = int64(cpus * 1e9)
	if s.pids, err = strconv.ParseInt(cfg.Get(EnvPids), 10, 64); err != nil || s.pids < 8 {
		return s, cfg.Invalid(EnvPids, "use a process limit of at least 8")
	}
	if !strings.HasPrefix(s.workdir, "/") || s.workdir == "/" {
		return s, cfg.Invalid(EnvWorkdir, "use an absolute path below /, such as /workspace")
	}
	if v := cfg.Get(EnvDisk); !strings.EqualFold(v, "none") {
		if s.disk, err = units.RAMInBytes(v); err != nil || s.disk < 1<<20 {
			return s, cfg.Invalid(EnvDisk, "use a size of at least 1m, such as 512m or 4g, or none for no limit")
		}
	}
	if s.pool, err = strconv.Atoi(cfg.Get(EnvPool)); err != nil || s.pool < 0 || s.pool > maxPoolSize {
		return s, cfg.Invalid(EnvPool, fmt.Sprintf("use a number of containers from 0 (no warm pool) to %d", maxPoolSize))
	}
	s.images = providers.NewImagePolicy(s.image, cfg.Get(EnvAllowed))
	if s.expiry, err = cfg.Duration(EnvExpiry, time.Millisecond, 0); err != nil {
		return s, err
	}
	if v := cfg.Get(EnvCapAdd); !strings.EqualFold(v, "none") {
		for _, c := range strings.Split(v, ",") {
			c = strings.ToUpper(strings.TrimPrefix(strings.TrimSpace(c), "CAP_"))
			if c == "ALL" || c == "SYS_ADMIN" || c == "" {
				return s, cfg.Invalid(EnvCapAdd, "list capabilities by name, comma-separated; ALL and SYS_ADMIN are refused")
			}
			s.capAdd = append(s.capAdd, c)
		}
	}
	return s, nil
}

// Provider is the docker driver. It holds a client and settings, nothing
// about any one sandbox that the engine does not also hold.
type Provider struct {
	cli  *client.Client
	set  settings
	log  *slog.Logger
	host string

	// owned caches the sandboxes already checked to be ours.
	owned sync.Map // id -> box

	pullMu sync.Mutex // one pull at a time; concurrent creates wait for it

	listBudget int64 // see archiveListBudget

	disk diskState
	// channels holds each sandbox's channel (channel.go), a cache.
	channels  sync.Map // id -> *channelSlot
	noChannel bool     // every command through the engine's exec
	users     sync.Map // image ID + user -> [2]int{uid, gid}, for the workdir's owner
	pool      *pool    // nil without a warm pool
	warmOnly  bool     // Create waits for a warm container (tests)

	// Background processes: the shared in-sandbox supervisor, over RunArgv.
	*supervisor.Supervisor
}

// New connects to the engine named by DOCKER_HOST (and DOCKER_API_VERSION,
// DOCKER_CERT_PATH, DOCKER_TLS_VERIFY), from cfg or else the process
// environment, and fails with one clear error when none answers.
func New(ctx context.Context, cfg providers.Config) (*Provider, error) {
	cfg = cfg.WithDefaults(Settings)
	set, err := parseSettings(cfg)
	if err != nil {
		return nil, providers.Errorf(providers.ErrInvalidArgument, "docker provider: %w", err)
	}
	// The engine's variables as the docker CLI reads them, from the
	// server's merged settings (flags, environment or .env).
	var opts []client.Opt
	source := "the default address"
	if h := cfg.Get("DOCKER_HOST"); h != "" {
		opts = append(opts, client.WithHost(h))
		source = "DOCKER_HOST"
	}
	if dir := cfg.Get("DOCKER_CERT_PATH"); dir != "" {
		tc, err := tlsconfig.Client(tlsconfig.Options{
			CAFile:             filepath.Join(dir, "ca.pem"),
			CertFile:           filepath.Join(dir, "cert.pem"),
			KeyFile:            filepath.Join(dir, "key.pem"),
			InsecureSkipVerify: cfg.Get("DOCKER_TLS_VERIFY") == "",
			MinVersion:         tls.VersionTLS12,
		})
		if err != nil {
			return nil, providers.Errorf(providers.ErrInvalidArgument, "docker provider: cannot use the TLS files in DOCKER_CERT_PATH=%s: %w", dir, err)
		}
		opts = append(opts, client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: tc}, CheckRedirect: client.CheckRedirect}))
	}
	if v := cfg.Get("DOCKER_API_VERSION"); v != "" {
		opts = append(opts, client.WithAPIVersion(v))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, providers.Errorf(providers.ErrInvalidArgument, "docker provider: cannot use the engine address from %s: %w", source, err)
	}
	host := cli.DaemonHost()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ping, err := cli.Ping(pingCtx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		cli.Close()
		// The client words a socket's EACCES without wrapping it.
		if errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
			return nil, providers.Errorf(providers.ErrDenied,
				"docker provider: permission denied on the Docker engine's socket %s (from %s): %v; run as a user of the docker group, or set DOCKER_HOST to an engine this user may use", host, source, err)
		}
		return nil, providers.Errorf(providers.ErrUnavailable,
			"docker provider: no Docker engine answered at %s (from %s): %w; start the engine (dockerd) or set DOCKER_HOST to one that runs", host, source, err)
	}
	if ping.OSType != "" && ping.OSType != "linux" {
		cli.Close()
		return nil, providers.Errorf(providers.ErrUnavailable, "docker provider: the engine at %s runs %s containers; it needs Linux ones", host, ping.OSType)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("provider", Name)
	log.Debug("docker engine answers", "host", host, "api", cli.ClientVersion())
	p := &Provider{cli: cli, set: set, log: log, host: host, listBudget: archiveListBudget}
	p.Supervisor = supervisor.New(p, supervisor.Options{Logger: log})
	if set.pool > 0 {
		p.pool = newPool(p, set.pool)
	}
	return p, nil
}

func (p *Provider) Name() string { return Name }

func (p *Provider) Capabilities() providers.Capabilities {
	caps := providers.Capabilities{providers.CapStdin, providers.CapKillTree, providers.CapProcessIsolation}
	if p.set.network == "none" {
		caps = append(caps, providers.CapNetworkIsolation)
	}
	return caps
}

// Close removes the warm pool this server kept, and lets go of the engine.
func (p *Provider) Close() error {
	if p.pool != nil {
		p.pool.close()
	}
	p.closeChannels()
	return p.cli.Close()
}

var containerIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func notFound(id string) error {
	return providers.Errorf(providers.ErrNotFound, "sandbox %q not found", id)
}

// apiErr turns an engine error into a typed one. A missing container means
// the sandbox is gone.
func (p *Provider) apiErr(id, op string, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case cerrdefs.IsNotFound(err) && isNoSuchContainer(err):
		p.owned.Delete(id)
		return notFound(id)
	case client.IsErrConnectionFailed(err):
		return providers.Errorf(providers.ErrUnavailable, "%s: the Docker engine at %s does not answer: %w", op, p.host, err)
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "is not running"):
		return providers.Errorf(providers.ErrUnavailable, "sandbox %s is stopped (was the engine restarted?); destroy it and create another", id)
	}
	return providers.Errorf(providers.ErrUnavailable, "%s: %w", op, err)
}

func (p *Provider) Create(ctx context.Context, opts providers.CreateOptions) (providers.Sandbox, error) {
	if err := providers.ValidateEnv(opts.Env); err != nil {
		return providers.Sandbox{}, err
	}
	for k := range opts.Labels {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument, "label name %q is invalid: names must be non-empty and contain no '=' or NUL", k)
		}
	}
	image := opts.Image
	if image == "" {
		image = p.set.image
	}
	user, imageID, err := p.ensureImage(ctx, image)
	if err != nil {
		return providers.Sandbox{}, err
	}

	if p.pool != nil {
		key := p.poolKey(imageID, user)
		sb, ok := p.pool.take(ctx, image, key, opts)
		for p.warmOnly && !ok && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
			sb, ok = p.pool.take(ctx, image, key, opts)
		}
		if ok {
			return sb, nil
		}
		defer p.pool.keepWarm(image)
	}

	now := time.Now().UTC()
	labels := map[string]string{
		labelManaged: "true",
		labelServer:  p.set.server,
		labelName:    opts.Name,
		labelCreated: now.Format(time.RFC3339Nano),
		labelExpires: now.Add(p.set.expiry).Format(time.RFC3339Nano),
		labelWorkdir: p.set.workdir,
	}
	for k, v := range opts.Labels {
		labels[userLabelPrefix+k] = v
	}
	id, err := p.startContainer(ctx, "mcp-sandbox-"+randomHex(6), image, user, imageID, opts.Env, labels)
	if err != nil {
		return providers.Sandbox{}, err
	}
	p.owned.Store(id, box{workdir: p.set.workdir})
	p.log.Info("sandbox created", "sandbox", id[:12], "image", image)
	return p.sandbox(id, image, labels), nil
}

// startContainer makes and starts a hardened container named name, with
// the image's user owning the workdir: a cold create and a pool both make
// theirs here. labels gets the disk limit's description.
func (p *Provider) startContainer(ctx context.Context, name, image, user, imageID string, env, labels map[string]string) (string, error) {
	// The workdir's owner is known once its image was seen: a tmpfs workdir
	// takes it at create time.
	owner := [2]int{}
	userKey := imageID + "\x00" + user
	if v, ok := p.users.Load(userKey); ok {
		owner = v.([2]int)
	}
	kind := p.diskKind(ctx)
	id, err := p.createContainer(ctx, name, image, env, labels, kind, owner)
	if refusal := (quotaRefusal{}); errors.As(err, &refusal) {
		p.noQuota(refusal.error)
		kind = diskTmpfs
		id, err = p.createContainer(ctx, name, image, env, labels, kind, owner)
	}
	if err != nil {
		return "", err
	}
	// From here on a failure removes the container: nothing is left behind.
	fail := func(err error) (string, error) {
		p.remove(id)
		return "", err
	}
	uid, gid, err := p.lookupUser(ctx, id, user)
	if err != nil {
		return fail(err)
	}
	p.users.Store(userKey, [2]int{uid, gid})
	if kind == diskTmpfs && owner != [2]int{uid, gid} {
		// First sight of a non-root image: make it again with the workdir
		// its user's.
		p.remove(id)
		if id, err = p.createContainer(ctx, name, image, env, labels, kind, [2]int{uid, gid}); err != nil {
			return "", err
		}
	} else if kind != diskTmpfs && (uid != 0 || gid != 0) {
		// Docker makes the workdir as root; give it to the image's user.
		if err := p.chownWorkdir(ctx, id, uid, gid); err != nil {
			return fail(err)
		}
	}
	if _, err := p.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fail(providers.Errorf(providers.ErrUnavailable, "start sandbox from image %q: %w", image, err))
	}
	return id, nil
}

// createContainer creates (does not start) a hardened sandbox container.
func (p *Provider) createContainer(ctx context.Context, name, image string, env, labels map[string]string, kind diskKind, owner [2]int) (string, error) {
	if d := p.describeDisk(kind); d != "" {
		labels[labelDisk] = d
	} else {
		delete(labels, labelDisk)
	}
	yes := true
	pids := p.set.pids
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(p.set.network),
		CapDrop:     []string{"ALL"},
		CapAdd:      p.set.capAdd,
		SecurityOpt: []string{"no-new-privileges"},
		// A real init reaps the children of killed commands.
		Init: &yes,
		Resources: container.Resources{
			Memory:     p.set.memory,
			MemorySwap: p.set.memory, // no swap beyond the limit
			NanoCPUs:   p.set.nanoCPUs,
			PidsLimit:  &pids,
		},
	}
	p.applyDisk(hc, kind, owner[0], owner[1])
	res, err := p.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image: image,
			// Keep the container alive and idle; commands come by exec. The
			// image's own entrypoint (a server, a REPL) is not run.
			Entrypoint: []string{"sleep", "infinity"},
			Cmd:        nil,
			WorkingDir: p.set.workdir,
			Env:        envList(env),
			Labels:     labels,
		},
		HostConfig: hc,
	})
	if err != nil {
		if kind == diskQuota && isQuotaRefusal(err) {
			return "", quotaRefusal{err} // the caller tries again without
		}
		if cerrdefs.IsInvalidArgument(err) {
			return "", providers.Errorf(providers.ErrInvalidArgument, "create sandbox from image %q: %w", image, err)
		}
		return "", p.apiErr("", "create sandbox", err)
	}
	return res.ID, nil
}

// remove force-removes a container and its volumes, on a context of its
// own: it cleans up after a failure, whose context may be the cause.
func (p *Provider) remove(id string) {
	rmCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.cli.ContainerRemove(rmCtx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
}

// sandbox rebuilds a Sandbox from a container's labels.
func (p *Provider) sandbox(id, image string, labels map[string]string) providers.Sandbox {
	created, _ := time.Parse(time.RFC3339Nano, labels[labelCreated])
	user := map[string]string{}
	for k, v := range labels {
		if name, ok := strings.CutPrefix(k, userLabelPrefix); ok {
			user[name] = v
		}
	}
	return providers.Sandbox{
		ID:        id,
		Provider:  Name,
		Name:      labels[labelName],
		Image:     image,
		Workdir:   labels[labelWorkdir],
		DiskLimit: labels[labelDisk],
		CreatedAt: created,
		Labels:    user,
	}
}

func (p *Provider) Destroy(ctx context.Context, id string) error {
	b, err := p.box(ctx, id)
	if err != nil {
		return err
	}
	p.closeChannel(id)
	_, err = p.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	p.owned.Delete(id)
	switch {
	case err == nil:
		if b.claimed {
			p.dropClaim(id)
		}
		p.log.Info("sandbox destroyed", "sandbox", id[:12])
		return nil
	case cerrdefs.IsNotFound(err):
		return notFound(id)
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress"):
		return nil // another caller is removing it
	}
	return p.apiErr(id, "destroy sandbox", err)
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hostname names this server when MCP_SANDBOX_SERVER_ID is unset.
func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "default"
}
