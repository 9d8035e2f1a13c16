// Package modal is the driver for Modal (modal.com) sandboxes: containers
// managed through Modal's gRPC control plane, with commands and files served
// by each sandbox's task command router, as Modal's own SDKs do.
//
// Configuration, read like Modal's SDKs read it:
//
//	MODAL_TOKEN_ID       required; Modal token ID
//	MODAL_TOKEN_SECRET   required; Modal token secret
//	MODAL_SERVER_URL     default https://api.modal.com:443 (http:// = plaintext, for a fake)
//	MODAL_ENVIRONMENT    Modal environment; empty = the workspace's default
//
// and this project's own settings:
//
//	MCP_SANDBOX_MODAL_APP      app the sandboxes belong to (default "mcp-sandbox")
//	MCP_SANDBOX_MODAL_IMAGE    registry image for sandboxes without one (default python:3.12-slim)
//	MCP_SANDBOX_MODAL_ALLOWED_IMAGES  patterns of other images sandbox_create may ask for (default none)
//	MCP_SANDBOX_MODAL_TIMEOUT  hard lifetime of a sandbox (default 1h, at most 24h)
//	MCP_SANDBOX_MODAL_EXPIRY   how long a sandbox is safe from the reaper (default 15m)
//
// Each sandbox is tagged with the server's ID (MCP_SANDBOX_SERVER_ID), so
// that a server's reaper only touches its own.
//
// The driver is stateless: a sandbox's task, router address and token and
// its working directory are fetched from Modal by sandbox ID and only
// cached, so a restarted server or another replica serves the same sandbox.
package modal

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Name is the registry name.
const Name = "modal"

// Settings the driver reads.
const (
	EnvTokenID     = "MODAL_TOKEN_ID"
	EnvTokenSecret = "MODAL_TOKEN_SECRET"
	EnvServerURL   = "MODAL_SERVER_URL"
	EnvEnvironment = "MODAL_ENVIRONMENT"
	EnvApp         = "MCP_SANDBOX_MODAL_APP"
	EnvImage       = "MCP_SANDBOX_MODAL_IMAGE"
	EnvTimeout     = "MCP_SANDBOX_MODAL_TIMEOUT"
	EnvExpiry      = "MCP_SANDBOX_MODAL_EXPIRY"
	EnvAllowed     = "MCP_SANDBOX_MODAL_ALLOWED_IMAGES"
)

// Defaults.
const (
	DefaultServerURL = "https://api.modal.com:443"
	DefaultApp       = "mcp-sandbox"
	DefaultImage     = "python:3.12-slim"
	DefaultTimeout   = time.Hour
	DefaultExpiry    = 15 * time.Minute
)

// missingTokens is the error when credentials are missing; it names only
// the variables that are unset.
func missingTokens(id, secret string) error {
	switch {
	case id == "" && secret == "":
		return fmt.Errorf("MODAL_TOKEN_ID and MODAL_TOKEN_SECRET environment variables are not set. Please set them to your Modal token ID and secret.")
	case id == "":
		return fmt.Errorf("MODAL_TOKEN_ID environment variable is not set. Please set it to your Modal token ID.")
	case secret == "":
		return fmt.Errorf("MODAL_TOKEN_SECRET environment variable is not set. Please set it to your Modal token secret.")
	}
	return nil
}

// Tags the driver keeps beside the caller's labels. Labels may not use the
// prefix.
const (
	tagPrefix  = "mcp-sandbox."
	tagServer  = tagPrefix + "server"
	tagName    = tagPrefix + "name"
	tagImage   = tagPrefix + "image"
	tagCreated = tagPrefix + "created"
	tagExpires = tagPrefix + "expires"
	tagNonce   = tagPrefix + "create-nonce"
)

// Settings are the driver's settings, for --help, the README and Config.
var Settings = []providers.Setting{
	{Env: EnvTokenID, Secret: true, Usage: "Modal token ID (required)"},
	{Env: EnvTokenSecret, Secret: true, Usage: "Modal token secret (required)"},
	{Env: EnvServerURL, Default: DefaultServerURL, Usage: "Modal API URL (http:// for a local server such as modalfake)"},
	{Env: EnvEnvironment, Usage: "Modal environment; empty means the workspace's default"},
	{Env: EnvApp, Flag: "modal-app", Default: DefaultApp, Usage: "Modal app the sandboxes belong to (created if missing)"},
	{Env: EnvImage, Flag: "modal-image", Default: DefaultImage, Usage: "registry image for sandboxes created without an image"},
	{Env: EnvAllowed, Flag: "modal-allowed-images", Usage: "comma-separated image patterns (* matches anything) sandbox_create may use besides the default image"},
	{Env: EnvTimeout, Flag: "modal-timeout", Default: DefaultTimeout.String(), Usage: "hard lifetime of a sandbox (10s to 24h); Modal ends it then"},
	{Env: EnvExpiry, Flag: "modal-expiry", Default: DefaultExpiry.String(), Usage: "how long after creation a sandbox is safe from the reaper"},
}

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
	TokenID, TokenSecret string
	ServerURL            string
	Environment          string
	App                  string
	Image                string
	// AllowedImages are patterns of the images sandbox_create may name
	// besides Image (see providers.ImagePolicy).
	AllowedImages string
	// Timeout is a sandbox's hard lifetime: Modal ends it then.
	Timeout time.Duration
	// Expiry is how long after creation a sandbox is safe from Reap.
	Expiry   time.Duration
	ServerID string
	// Capabilities overrides what the driver declares (tests against a fake
	// that does not isolate processes); nil means Modal's.
	Capabilities providers.Capabilities
	// Retries is how many times a call is retried on a transient failure
	// (default 3, as Modal's SDK); RetryBase is the first backoff (100ms).
	Retries   int
	RetryBase time.Duration
	// RequestTimeout bounds one control-plane call (default 30s);
	// CreateTimeout one sandbox creation (default 5m).
	RequestTimeout, CreateTimeout time.Duration
	// MaxThrottleWait caps how long the driver follows the server's
	// requests to slow down (default 1m).
	MaxThrottleWait time.Duration
	Logger          *slog.Logger
}

// OptionsFromConfig reads the settings listed in the package comment.
func OptionsFromConfig(cfg providers.Config) (Options, error) {
	cfg = cfg.WithDefaults(Settings)
	o := Options{
		TokenID:       cfg.Get(EnvTokenID),
		TokenSecret:   cfg.Get(EnvTokenSecret),
		ServerURL:     cfg.Get(EnvServerURL),
		Environment:   cfg.Get(EnvEnvironment),
		App:           cfg.Get(EnvApp),
		Image:         cfg.Get(EnvImage),
		ServerID:      cfg.ServerID,
		AllowedImages: cfg.Get(EnvAllowed),
		Logger:        cfg.Logger,
	}
	if err := missingTokens(o.TokenID, o.TokenSecret); err != nil {
		return o, err
	}
	var err error
	if o.Timeout, err = cfg.Duration(EnvTimeout, 10*time.Second, 24*time.Hour); err != nil {
		return o, err
	}
	o.Expiry, err = cfg.Duration(EnvExpiry, time.Second, 30*24*time.Hour)
	return o, err
}

// Provider is the Modal driver.
type Provider struct {
	o   Options
	log *slog.Logger
	cp  pb.ModalClientClient
	cc  *grpc.ClientConn
	// localRouter: the control plane is on this machine, so the router's
	// https:// address is dialled in plaintext, as Modal's SDKs do.
	localRouter bool
	auth        tokenCache

	mu      sync.Mutex
	appID   string
	images  map[string]string           // registry reference -> image ID
	conns   map[string]*sandboxConn     // by sandbox ID; a cache
	routers map[string]*grpc.ClientConn // by router address

	// Background processes: the shared in-sandbox supervisor, over Exec.
	*supervisor.Supervisor
}

// New makes a driver; it fails when a token is missing or the server URL
// is malformed. It does not call Modal: the first use does.
func New(o Options) (*Provider, error) {
	if err := missingTokens(o.TokenID, o.TokenSecret); err != nil {
		return nil, err
	}
	if o.ServerURL == "" {
		o.ServerURL = DefaultServerURL
	}
	if o.App == "" {
		o.App = DefaultApp
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Expiry <= 0 {
		o.Expiry = DefaultExpiry
	}
	if o.ServerID == "" {
		o.ServerID, _ = os.Hostname()
	}
	if o.Capabilities == nil {
		// Each sandbox is its own gVisor container. The driver kills a
		// timed-out command's process tree itself, but cannot promise to
		// reach children that left it.
		o.Capabilities = providers.Capabilities{providers.CapStdin, providers.CapProcessIsolation}
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 100 * time.Millisecond
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.CreateTimeout <= 0 {
		o.CreateTimeout = 5 * time.Minute
	}
	if o.MaxThrottleWait <= 0 {
		o.MaxThrottleWait = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{o: o, log: o.Logger, images: map[string]string{}, conns: map[string]*sandboxConn{}, routers: map[string]*grpc.ClientConn{}}
	p.Supervisor = supervisor.New(p, supervisor.Options{Logger: o.Logger})
	if err := p.dialControlPlane(); err != nil {
		return nil, err
	}
	p.auth.p = p
	return p, nil
}

func (p *Provider) Name() string                         { return Name }
func (p *Provider) Capabilities() providers.Capabilities { return p.o.Capabilities }

// Close drops connections; sandboxes keep running.
func (p *Provider) Close() error {
	p.mu.Lock()
	routers := p.routers
	p.routers = map[string]*grpc.ClientConn{}
	p.conns = map[string]*sandboxConn{}
	p.mu.Unlock()
	for _, c := range routers {
		c.Close()
	}
	return p.cc.Close()
}

// validID accepts Modal's sandbox IDs ("sb-" and 22 or more letters and
// digits). Anything else is "not found" and never reaches Modal.
var validID = regexp.MustCompile(`^sb-[0-9A-Za-z]{22,40}$`)

func notFound(id string) error {
	return providers.Errorf(providers.ErrNotFound, "sandbox %q not found (it may have been destroyed or reached its timeout)", id)
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
