// Package daytona is the driver for Daytona (daytona.io) sandboxes, managed
// through Daytona's REST API, with commands and files served by the toolbox
// API of the daemon inside each sandbox (reached through the toolbox proxy
// URL the sandbox reports).
//
// The driver is stateless: a sandbox's connection details (toolbox URL,
// working directory) are fetched from the API by ID and only cached, and
// what the driver knows about a sandbox (its server, name, creation and
// expiry) lives in its Daytona labels, so a restarted server or another
// replica serves the same sandbox.
package daytona

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Name is the registry name.
const Name = "daytona"

// Settings the driver reads. The DAYTONA_* names and defaults are those of
// Daytona's own SDKs and CLI, so an existing set-up carries over.
const (
	EnvAPIKey          = "DAYTONA_API_KEY"
	EnvAPIURL          = "DAYTONA_API_URL"
	EnvTarget          = "DAYTONA_TARGET"
	EnvDisableAutoStop = "DAYTONA_DISABLE_AUTO_STOP"
	EnvDeleteOnClose   = "DAYTONA_DELETE_ON_CLOSE"
	EnvSnapshot        = "MCP_SANDBOX_DAYTONA_SNAPSHOT"
	EnvAllowed         = "MCP_SANDBOX_DAYTONA_ALLOWED_IMAGES"
	EnvExpiry          = "MCP_SANDBOX_DAYTONA_EXPIRY"
)

// Settings are the driver's settings, for --help, the README and Config.
var Settings = []providers.Setting{
	{Env: EnvAPIKey, Secret: true, Usage: "Daytona API key, sent as a bearer token (required)"},
	{Env: EnvAPIURL, Default: DefaultAPIURL, Usage: "Daytona API endpoint (the /api prefix is part of it)"},
	{Env: EnvTarget, Default: DefaultTarget, Usage: "target region, sent on create"},
	{Env: EnvDisableAutoStop, Default: "false", Usage: "true: sandboxes never auto-stop (auto-stop interval 0)"},
	{Env: EnvDeleteOnClose, Default: "false", Usage: "when the owning session ends: false stops the sandbox (a later session can find it), true deletes it"},
	{Env: EnvSnapshot, Flag: "daytona-snapshot", Usage: "snapshot for sandboxes created without an image (default: the organization's default)"},
	{Env: EnvAllowed, Flag: "daytona-allowed-images", Usage: "comma-separated patterns (* matches anything) of the snapshots, and image:REF images, sandbox_create may use besides the default"},
	{Env: EnvExpiry, Flag: "daytona-expiry", Default: "24h", Usage: "how long a running sandbox is safe from the reaper"},
}

// MissingKeyMessage is the error when no API key is configured.
const MissingKeyMessage = "DAYTONA_API_KEY environment variable is not set. Please set it to your Daytona API key."

// Defaults.
const (
	DefaultAPIURL = "https://app.daytona.io/api"
	DefaultTarget = "eu"
	DefaultExpiry = 24 * time.Hour
)

// Labels the driver keeps beside the caller's. Labels may not use the prefix.
const (
	labelPrefix  = "mcp-sandbox."
	labelServer  = labelPrefix + "server"
	labelName    = labelPrefix + "name"
	labelCreated = labelPrefix + "created"
	labelExpires = labelPrefix + "expires"
	labelNonce   = labelPrefix + "create-nonce"
	labelImage   = labelPrefix + "image"
)

// imagePrefix marks a sandbox_create image that is a container image to
// build from, not the name of a Daytona snapshot.
const imagePrefix = "image:"

func init() {
	providers.Register(Name, providers.Driver{Settings: Settings, Open: func(ctx context.Context, cfg providers.Config) (providers.Provider, error) {
		opts, err := OptionsFromConfig(cfg)
		if err != nil {
			return nil, err
		}
		return New(opts)
	}})
}

// Options configure the driver. Zero values take the defaults above.
type Options struct {
	APIKey          string
	APIURL          string
	Target          string
	DisableAutoStop bool
	DeleteOnClose   bool
	Snapshot        string
	// AllowedImages are patterns of the snapshots (and image:REF images)
	// sandbox_create may name besides Snapshot (see providers.ImagePolicy).
	AllowedImages string
	Expiry        time.Duration
	ServerID      string
	// Capabilities overrides what the driver declares (tests against a fake
	// that does not isolate processes); nil means Daytona's.
	Capabilities providers.Capabilities
	// Retries is how many times an idempotent call is retried on a 5xx, a
	// 429 or a broken connection (default 3); RetryBase is the first
	// backoff (default 250ms). Retries stop once RetryBudget (default 10s)
	// has passed, so an unreachable Daytona fails a call in seconds.
	Retries     int
	RetryBase   time.Duration
	RetryBudget time.Duration
	// RequestTimeout bounds one API request (default 60s: a create may
	// wait up to 30s server-side for its sandbox to start).
	RequestTimeout time.Duration
	// StartTimeout bounds the wait for a sandbox to reach "started"
	// (default 2m).
	StartTimeout time.Duration
	HTTPClient   *http.Client
	Logger       *slog.Logger
}

// OptionsFromConfig reads the settings listed in Settings.
func OptionsFromConfig(cfg providers.Config) (Options, error) {
	cfg = cfg.WithDefaults(Settings)
	o := Options{
		APIKey:        cfg.Get(EnvAPIKey),
		APIURL:        cfg.Get(EnvAPIURL),
		Target:        cfg.Get(EnvTarget),
		Snapshot:      cfg.Get(EnvSnapshot),
		AllowedImages: cfg.Get(EnvAllowed),
		ServerID:      cfg.ServerID,
		Logger:        cfg.Logger,
	}
	if o.APIKey == "" {
		return o, fmt.Errorf("%s", MissingKeyMessage)
	}
	var err error
	if o.DisableAutoStop, err = cfg.Bool(EnvDisableAutoStop); err != nil {
		return o, err
	}
	if o.DeleteOnClose, err = cfg.Bool(EnvDeleteOnClose); err != nil {
		return o, err
	}
	if o.Expiry, err = cfg.Duration(EnvExpiry, time.Second, 0); err != nil {
		return o, err
	}
	return o, nil
}

// Provider is the Daytona driver.
type Provider struct {
	o      Options
	apiURL string
	http   *http.Client
	log    *slog.Logger

	mu    sync.Mutex
	conns map[string]*conn // cache of toolbox connection details, by sandbox ID

	// Background processes: the shared in-sandbox supervisor, over Exec.
	*supervisor.Supervisor
}

// New makes a driver; it fails when the API key is missing.
func New(o Options) (*Provider, error) {
	if o.APIKey == "" {
		return nil, fmt.Errorf("%s", MissingKeyMessage)
	}
	if o.APIURL == "" {
		o.APIURL = DefaultAPIURL
	}
	if o.Target == "" {
		o.Target = DefaultTarget
	}
	if o.Expiry <= 0 {
		o.Expiry = DefaultExpiry
	}
	if o.ServerID == "" {
		o.ServerID, _ = os.Hostname()
	}
	if o.Capabilities == nil {
		// Each sandbox is its own container. A timeout or cancellation
		// kills the command's whole process group.
		o.Capabilities = providers.Capabilities{providers.CapStdin, providers.CapKillTree, providers.CapProcessIsolation}
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 250 * time.Millisecond
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = 10 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{o: o, apiURL: strings.TrimRight(o.APIURL, "/"), http: o.HTTPClient, log: o.Logger, conns: map[string]*conn{}}
	p.Supervisor = supervisor.New(p, supervisor.Options{Logger: o.Logger})
	if p.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		p.http = &http.Client{Transport: t}
	}
	return p, nil
}

func (p *Provider) Name() string                         { return Name }
func (p *Provider) Capabilities() providers.Capabilities { return p.o.Capabilities }

// Close drops cached connections; sandboxes keep running.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.conns = map[string]*conn{}
	p.mu.Unlock()
	p.http.CloseIdleConnections()
	return nil
}

// validID accepts what Daytona issues (UUIDs) and sandbox names. Anything
// else is "not found" and never reaches a URL.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

func notFound(id string) error {
	return providers.Errorf(providers.ErrNotFound, "sandbox %q not found (it may have been deleted)", id)
}

func checkID(id string) error {
	if !validID.MatchString(id) {
		return notFound(id)
	}
	return nil
}

// sandboxFrom builds the portable description from the API's answer.
func (p *Provider) sandboxFrom(d apiSandbox, workdir string) providers.Sandbox {
	sb := providers.Sandbox{ID: d.ID, Provider: Name, Image: d.Snapshot, Workdir: workdir, CreatedAt: d.CreatedAt, Labels: map[string]string{}}
	for k, v := range d.Labels {
		if !strings.HasPrefix(k, labelPrefix) {
			sb.Labels[k] = v
		}
	}
	sb.Name = d.Labels[labelName]
	if img := d.Labels[labelImage]; img != "" {
		sb.Image = img
	}
	if t, err := time.Parse(time.RFC3339Nano, d.Labels[labelCreated]); err == nil {
		sb.CreatedAt = t
	}
	return sb
}

var _ providers.Provider = (*Provider)(nil)

// detached is for cleanup that must happen even when the caller gave up.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}
