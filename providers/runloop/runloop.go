// Package runloop is the driver for Runloop (runloop.ai) devboxes, through
// Runloop's public REST API: devboxes are created and awaited with the
// API's long polls, commands run as asynchronous executions whose output is
// read from their event streams, and files move with upload_file and
// download_file.
//
// The driver is stateless: everything it needs about a devbox lives in the
// devbox's metadata and is read back by ID, so a restarted server or
// another replica serves the same devbox. Only the home directory is
// cached, as a connection detail.
package runloop

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Name is the registry name.
const Name = "runloop"

// Settings the driver reads.
const (
	EnvAPIKey       = "RUNLOOP_API_KEY"
	EnvBaseURL      = "RUNLOOP_BASE_URL"
	EnvBlueprint    = "MCP_SANDBOX_RUNLOOP_BLUEPRINT"
	EnvResourceSize = "MCP_SANDBOX_RUNLOOP_RESOURCE_SIZE"
	EnvKeepAlive    = "MCP_SANDBOX_RUNLOOP_KEEP_ALIVE"
	EnvCreateWait   = "MCP_SANDBOX_RUNLOOP_CREATE_TIMEOUT"
	EnvExpiry       = "MCP_SANDBOX_RUNLOOP_EXPIRY"
)

// MissingKeyMessage is the error when no API key is configured.
const MissingKeyMessage = "RUNLOOP_API_KEY environment variable is not set. Please set it to your Runloop API key."

// Defaults.
const (
	DefaultBaseURL      = "https://api.runloop.ai"
	DefaultResourceSize = "SMALL"
	// DefaultKeepAlive is short so that a devbox nobody uses stops
	// costing money soon; the driver renews it while the devbox is used.
	DefaultKeepAlive  = 10 * time.Minute
	DefaultCreateWait = 5 * time.Minute
	// DefaultExpiry is how long a devbox is safe from the reaper; the
	// keep-alive ends idle devboxes much sooner.
	DefaultExpiry = 24 * time.Hour
)

// Settings lists what the driver reads; the server shows them in --help.
var Settings = []providers.Setting{
	{Env: EnvAPIKey, Secret: true, Usage: "Runloop API key, sent as a bearer token (required)"},
	{Env: EnvBaseURL, Default: DefaultBaseURL, Usage: "Runloop API URL (runloopfake prints one for local testing)"},
	{Env: EnvBlueprint, Flag: "runloop-blueprint", Usage: "image for devboxes created without one: a bpt_ blueprint ID, a snp_ snapshot ID or a blueprint name (default: Runloop's standard image)"},
	{Env: EnvResourceSize, Flag: "runloop-resource-size", Default: DefaultResourceSize, Usage: "devbox size: X_SMALL, SMALL, MEDIUM, LARGE, X_LARGE or XX_LARGE"},
	{Env: EnvKeepAlive, Flag: "runloop-keep-alive", Default: DefaultKeepAlive.String(), Usage: "an unused devbox shuts down after this long (1m to 48h); use renews it"},
	{Env: EnvCreateWait, Flag: "runloop-create-timeout", Default: DefaultCreateWait.String(), Usage: "longest wait for a new devbox to be running (10s to 1h)"},
	{Env: EnvExpiry, Flag: "runloop-expiry", Default: DefaultExpiry.String(), Usage: "how long a devbox is safe from the reaper once its session is gone (at least 1s)"},
}

var resourceSizes = []string{"X_SMALL", "SMALL", "MEDIUM", "LARGE", "X_LARGE", "XX_LARGE"}

// Metadata keys the driver keeps beside the caller's labels. Labels may
// not use the prefix.
const (
	metaPrefix  = "mcp-sandbox."
	metaServer  = metaPrefix + "server"
	metaName    = metaPrefix + "name"
	metaCreated = metaPrefix + "created"
	metaExpires = metaPrefix + "expires"
	metaNonce   = metaPrefix + "create-nonce"
)

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
	APIKey       string
	BaseURL      string
	Blueprint    string
	ResourceSize string
	KeepAlive    time.Duration
	CreateWait   time.Duration
	Expiry       time.Duration
	ServerID     string
	// Capabilities overrides what the driver declares (tests against a
	// fake that does not isolate processes); nil means Runloop's.
	Capabilities providers.Capabilities
	// Retries is how many times a call is retried on a 5xx, 408, 409, 429
	// or a broken connection (default 3); RetryBase is the first backoff
	// (default 250ms), doubling each time.
	Retries   int
	RetryBase time.Duration
	// MaxRetryAfter is the longest Retry-After the driver waits out
	// (default 20s); a longer one fails the call with the delay named.
	MaxRetryAfter time.Duration
	// RequestTimeout bounds one ordinary API request (default 30s).
	RequestTimeout time.Duration
	// LongPoll is the hold asked of the API's long polls (default 25s).
	LongPoll time.Duration
	// NoChannel makes file calls check with commands always, never through
	// a devbox's channel (see channel.go).
	NoChannel  bool
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// OptionsFromConfig reads the settings in Settings.
func OptionsFromConfig(cfg providers.Config) (Options, error) {
	cfg = cfg.WithDefaults(Settings)
	o := Options{
		APIKey:       cfg.Get(EnvAPIKey),
		BaseURL:      cfg.Get(EnvBaseURL),
		Blueprint:    cfg.Get(EnvBlueprint),
		ResourceSize: strings.ToUpper(cfg.Get(EnvResourceSize)),
		ServerID:     cfg.ServerID,
		Logger:       cfg.Logger,
	}
	if o.APIKey == "" {
		return o, fmt.Errorf("%s", MissingKeyMessage)
	}
	if !slices.Contains(resourceSizes, o.ResourceSize) {
		return o, cfg.Invalid(EnvResourceSize, "use one of "+strings.Join(resourceSizes, ", "))
	}
	if !strings.HasPrefix(o.BaseURL, "https://") && !strings.HasPrefix(o.BaseURL, "http://") {
		return o, cfg.Invalid(EnvBaseURL, "use an http:// or https:// URL")
	}
	var err error
	if o.KeepAlive, err = cfg.Duration(EnvKeepAlive, time.Minute, 48*time.Hour); err != nil {
		return o, err
	}
	if o.CreateWait, err = cfg.Duration(EnvCreateWait, 10*time.Second, time.Hour); err != nil {
		return o, err
	}
	o.Expiry, err = cfg.Duration(EnvExpiry, time.Second, 0)
	return o, err
}

// Provider is the Runloop driver.
type Provider struct {
	o    Options
	base string
	http *http.Client
	log  *slog.Logger

	mu    sync.Mutex
	homes map[string]*devboxInfo // devbox ID -> what commands need to know (a cache)
	kept  map[string]time.Time   // devbox ID -> last keep_alive sent

	chans        sync.Map // devbox ID -> *chanSlot: the file channel
	channelRetry time.Duration

	// Background processes: the shared in-sandbox supervisor, over Exec.
	*supervisor.Supervisor
}

// New makes a driver; it fails when the API key is missing.
func New(o Options) (*Provider, error) {
	if o.APIKey == "" {
		return nil, fmt.Errorf("%s", MissingKeyMessage)
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.ResourceSize == "" {
		o.ResourceSize = DefaultResourceSize
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.CreateWait <= 0 {
		o.CreateWait = DefaultCreateWait
	}
	if o.Expiry <= 0 {
		o.Expiry = DefaultExpiry
	}
	if o.ServerID == "" {
		o.ServerID, _ = os.Hostname()
	}
	if o.Capabilities == nil {
		// Each devbox is its own VM; a timeout or cancellation kills the
		// command's whole process group.
		o.Capabilities = providers.Capabilities{providers.CapStdin, providers.CapKillTree, providers.CapProcessIsolation}
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 250 * time.Millisecond
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = 20 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.LongPoll <= 0 {
		o.LongPoll = 25 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{o: o, base: strings.TrimRight(o.BaseURL, "/"), http: o.HTTPClient, log: o.Logger,
		homes: map[string]*devboxInfo{}, kept: map[string]time.Time{}, channelRetry: channelRetry}
	p.Supervisor = supervisor.New(p, supervisor.Options{Logger: o.Logger})
	if p.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		p.http = &http.Client{Transport: t}
	}
	return p, nil
}

func (p *Provider) Name() string                         { return Name }
func (p *Provider) Capabilities() providers.Capabilities { return p.o.Capabilities }

// Close drops cached details, channels and idle connections; devboxes keep
// running.
func (p *Provider) Close() error {
	var wg sync.WaitGroup
	p.chans.Range(func(k, _ any) bool {
		wg.Go(func() { p.dropChannel(k.(string), false) })
		return true
	})
	wg.Wait()
	p.mu.Lock()
	p.homes = map[string]*devboxInfo{}
	p.kept = map[string]time.Time{}
	p.mu.Unlock()
	p.http.CloseIdleConnections()
	return nil
}

// validID accepts what Runloop issues (dbx_ and an alphanumeric tail).
// Anything else is "not found" and never reaches a URL.
var validID = regexp.MustCompile(`^dbx_[A-Za-z0-9]{1,64}$`)

func notFound(id string) error {
	return providers.Errorf(providers.ErrNotFound, "sandbox %q not found (it may have been destroyed, or shut down after its keep-alive ran out)", id)
}

func checkID(id string) error {
	if !validID.MatchString(id) {
		return notFound(id)
	}
	return nil
}

var _ providers.Provider = (*Provider)(nil)

// detached is for cleanup that must happen even when the caller gave up.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}
