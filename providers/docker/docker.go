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
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Name is the registry name.
const Name = "docker"

// Settings, by their environment-variable name.
const (
	EnvImage   = "MCP_SANDBOX_DOCKER_IMAGE"   // default image
	EnvNetwork = "MCP_SANDBOX_DOCKER_NETWORK" // network to attach; empty means none
	EnvMemory  = "MCP_SANDBOX_DOCKER_MEMORY"  // memory limit, e.g. 512m, 2g
	EnvCPUs    = "MCP_SANDBOX_DOCKER_CPUS"    // CPU limit, e.g. 0.5, 2
	EnvPids    = "MCP_SANDBOX_DOCKER_PIDS"    // process limit
	EnvWorkdir = "MCP_SANDBOX_DOCKER_WORKDIR" // absolute workdir inside the container
	EnvCapAdd  = "MCP_SANDBOX_DOCKER_CAP_ADD" // capabilities added back after dropping all; "none" for none
	EnvExpiry  = "MCP_SANDBOX_DOCKER_EXPIRY"  // how long a sandbox is safe from the reaper
	EnvServer  = "MCP_SANDBOX_SERVER_ID"      // names this server's containers, for the reaper (shared with other drivers)
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

func init() {
	providers.Register(Name, func(cfg providers.Config) (providers.Provider, error) {
		return New(context.Background(), cfg)
	})
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
}

func parseSettings(cfg providers.Config) (settings, error) {
	get := func(key, def string) string {
		if v := strings.TrimSpace(cfg.Get(key)); v != "" {
			return v
		}
		return def
	}
	s := settings{
		image:   get(EnvImage, DefaultImage),
		network: get(EnvNetwork, "none"),
		workdir: get(EnvWorkdir, DefaultWorkdir),
		server:  get(EnvServer, hostname()),
	}
	var err error
	if s.memory, err = units.RAMInBytes(get(EnvMemory, DefaultMemory)); err != nil || s.memory < 6<<20 {
		return s, fmt.Errorf("%s=%q is not a memory size of at least 6m (examples: 512m, 2g)", EnvMemory, cfg.Get(EnvMemory))
	}
	cpus, err := strconv.ParseFloat(get(EnvCPUs, DefaultCPUs), 64)
	if err != nil || cpus <= 0 || cpus > 1024 {
		return s, fmt.Errorf("%s=%q is not a positive number of CPUs (examples: 0.5, 2)", EnvCPUs, cfg.Get(EnvCPUs))
	}
	s.nanoCPUs = int64(cpus * 1e9)
	if s.pids, err = strconv.ParseInt(get(EnvPids, DefaultPids), 10, 64); err != nil || s.pids < 8 {
		return s, fmt.Errorf("%s=%q is not a process limit of at least 8", EnvPids, cfg.Get(EnvPids))
	}
	if !strings.HasPrefix(s.workdir, "/") || s.workdir == "/" {
		return s, fmt.Errorf("%s=%q must be an absolute path below / (example: /workspace)", EnvWorkdir, s.workdir)
	}
	if s.expiry, err = time.ParseDuration(get(EnvExpiry, DefaultExpiry.String())); err != nil || s.expiry <= 0 {
		return s, fmt.Errorf("%s=%q is not a positive duration (examples: 30m, 24h)", EnvExpiry, cfg.Get(EnvExpiry))
	}
	switch v := get(EnvCapAdd, ""); strings.ToLower(v) {
	case "":
		s.capAdd = DefaultCapAdd
	case "none":
	default:
		for _, c := range strings.Split(v, ",") {
			c = strings.ToUpper(strings.TrimPrefix(strings.TrimSpace(c), "CAP_"))
			if c == "ALL" || c == "SYS_ADMIN" || c == "" {
				return s, fmt.Errorf("%s=%q: list capabilities by name, comma-separated; ALL and SYS_ADMIN are refused", EnvCapAdd, v)
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
	set, err := parseSettings(cfg)
	if err != nil {
		return nil, providers.Errorf(providers.ErrInvalidArgument, "docker provider: %w", err)
	}
	// The process environment first (FromEnv also reads the TLS settings),
	// then the server's merged settings, which may come from flags or .env.
	opts := []client.Opt{client.FromEnv}
	source := "the default address"
	if os.Getenv("DOCKER_HOST") != "" {
		source = "DOCKER_HOST"
	}
	if h := cfg.Get("DOCKER_HOST"); h != "" {
		opts = append(opts, client.WithHost(h))
		source = "DOCKER_HOST"
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
	caps := providers.Capabilities{providers.CapStdin, providers.CapKillTree, providers.CapProcessIsolation, providers.CapProcesses}
	if p.set.network == "none" {
		caps = append(caps, providers.CapNetworkIsolation)
	}
	return caps
}

func (p *Provider) Close() error { return p.cli.Close() }

// Client is the escape hatch to the Moby client, for callers that need an
// engine feature the portable API lacks.
func (p *Provider) Client() *client.Client { return p.cli }

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
