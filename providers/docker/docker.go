// Package docker runs each sandbox as a container on a Docker engine,
// through the Moby Go client. The container is the sandbox: commands run in
// it through the Exec API, files move through the archive (tar) API, and
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
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
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
)

// Defaults.
const (
	DefaultImage   = "python:3.12-slim"
	DefaultMemory  = "1g"
	DefaultCPUs    = "1"
	DefaultPids    = "512"
	DefaultWorkdir = "/workspace"
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

	// owned caches the containers already checked to carry our label (and
	// their workdir): container IDs are never reused, so the fact cannot go
	// stale, only absent.
	owned sync.Map // id -> workdir

	pullMu sync.Mutex // one pull at a time; concurrent creates wait for it

	listBudget int64 // see archiveListBudget
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
	return &Provider{cli: cli, set: set, log: log, host: host, listBudget: archiveListBudget}, nil
}

func (p *Provider) Name() string { return Name }

func (p *Provider) Capabilities() providers.Capabilities {
	caps := providers.Capabilities{providers.CapStdin, providers.CapKillTree, providers.CapProcessIsolation}
	if p.set.network == "none" {
		caps = append(caps, providers.CapNetworkIsolation)
	}
	return caps
}

func (p *Provider) Close() error { return p.cli.Close() }

var containerIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func notFound(id string) error {
	return providers.Errorf(providers.ErrNotFound, "sandbox %q not found", id)
}

// workdir checks that id names a container this driver made and returns its
// workdir. Names, short IDs and other people's containers are "not found":
// the engine resolves those too, and they are not ours to touch.
func (p *Provider) workdir(ctx context.Context, id string) (string, error) {
	if wd, ok := p.owned.Load(id); ok {
		return wd.(string), nil
	}
	if !containerIDPattern.MatchString(id) {
		return "", notFound(id)
	}
	res, err := p.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", p.apiErr(id, "inspect sandbox", err)
	}
	c := res.Container
	if c.Config == nil || c.Config.Labels[labelManaged] != "true" {
		return "", notFound(id)
	}
	wd := c.Config.Labels[labelWorkdir]
	if wd == "" {
		wd = c.Config.WorkingDir
	}
	p.owned.Store(id, wd)
	return wd, nil
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
	user, err := p.ensureImage(ctx, image)
	if err != nil {
		return providers.Sandbox{}, err
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
	yes := true
	pids := p.set.pids
	res, err := p.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: "mcp-sandbox-" + randomHex(6),
		Config: &container.Config{
			Image: image,
			// Keep the container alive and idle; commands come by exec. The
			// image's own entrypoint (a server, a REPL) is not run.
			Entrypoint: []string{"sleep", "infinity"},
			Cmd:        nil,
			WorkingDir: p.set.workdir,
			Env:        envList(opts.Env),
			Labels:     labels,
		},
		HostConfig: &container.HostConfig{
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
		},
	})
	if err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument, "create sandbox from image %q: %w", image, err)
		}
		return providers.Sandbox{}, p.apiErr("", "create sandbox", err)
	}
	id := res.ID
	// From here on a failure removes the container: nothing is left behind.
	fail := func(err error) (providers.Sandbox, error) {
		rmCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.cli.ContainerRemove(rmCtx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		return providers.Sandbox{}, err
	}
	if uid, gid, err := p.lookupUser(ctx, id, user); err != nil {
		return fail(err)
	} else if uid != 0 || gid != 0 {
		// Docker makes the workdir as root; give it to the image's user.
		if err := p.chownWorkdir(ctx, id, uid, gid); err != nil {
			return fail(err)
		}
	}
	if _, err := p.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fail(providers.Errorf(providers.ErrUnavailable, "start sandbox from image %q: %w", image, err))
	}
	p.owned.Store(id, p.set.workdir)
	p.log.Info("sandbox created", "sandbox", id[:12], "image", image)
	return p.sandbox(id, image, labels), nil
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
		CreatedAt: created,
		Labels:    user,
	}
}

func (p *Provider) Get(ctx context.Context, id string) (providers.Sandbox, error) {
	if !containerIDPattern.MatchString(id) {
		return providers.Sandbox{}, notFound(id)
	}
	res, err := p.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return providers.Sandbox{}, p.apiErr(id, "inspect sandbox", err)
	}
	c := res.Container
	if c.Config == nil || c.Config.Labels[labelManaged] != "true" {
		return providers.Sandbox{}, notFound(id)
	}
	return p.sandbox(c.ID, c.Config.Image, c.Config.Labels), nil
}

func (p *Provider) List(ctx context.Context, match map[string]string) ([]providers.Sandbox, error) {
	filters := make(client.Filters).Add("label", labelManaged+"=true")
	for k, v := range match {
		filters.Add("label", userLabelPrefix+k+"="+v)
	}
	res, err := p.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, p.apiErr("", "list sandboxes", err)
	}
	out := make([]providers.Sandbox, 0, len(res.Items))
	for _, c := range res.Items {
		// The engine filtered already; checking here too keeps the answer
		// exact whatever its filter makes of unusual values (an empty one).
		sb := p.sandbox(c.ID, c.Image, c.Labels)
		if labelsInclude(sb.Labels, match) {
			out = append(out, sb)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

func labelsInclude(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (p *Provider) Destroy(ctx context.Context, id string) error {
	if _, err := p.workdir(ctx, id); err != nil {
		return err
	}
	_, err := p.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	p.owned.Delete(id)
	switch {
	case err == nil:
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
