// Package e2b is the driver for E2B (e2b.dev) sandboxes: Firecracker VMs
// managed through E2B's REST API, with commands and files served by the envd
// daemon inside each sandbox (Connect RPC and plain HTTP).
//
// Configuration, read like E2B's own SDK reads it:
//
//	E2B_API_KEY      required; sent as X-API-Key
//	E2B_DOMAIN       default "e2b.app"; the API is https://api.<domain>
//	E2B_API_URL      overrides the API URL (self-hosted E2B, or e2bfake)
//	E2B_SANDBOX_URL  overrides envd's URL for every sandbox (routing by headers)
//
// and this project's own settings:
//
//	MCP_SANDBOX_E2B_TEMPLATE  template for sandboxes without an image (default "base")
//	MCP_SANDBOX_E2B_TIMEOUT   idle lifetime of a sandbox, extended while in use (default 5m)
//	MCP_SANDBOX_SERVER_ID     names this server in each sandbox's metadata (default: the host name)
//
// The driver is stateless: a sandbox's connection details (envd access
// token, address, home directory) are fetched from the API by ID and only
// cached, so a restarted server or another replica serves the same sandbox.
package e2b

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
)

// Name is the registry name.
const Name = "e2b"

// Settings the driver reads.
const (
	EnvAPIKey     = "E2B_API_KEY"
	EnvDomain     = "E2B_DOMAIN"
	EnvAPIURL     = "E2B_API_URL"
	EnvSandboxURL = "E2B_SANDBOX_URL"
	EnvTemplate   = "MCP_SANDBOX_E2B_TEMPLATE"
	EnvTimeout    = "MCP_SANDBOX_E2B_TIMEOUT"
	EnvAllowed    = "MCP_SANDBOX_E2B_ALLOWED_TEMPLATES"
)

// MissingKeyMessage is the error when no API key is configured; it is the
// wording E2B's SDK uses.
const MissingKeyMessage = "E2B_API_KEY environment variable is not set. Please set it to your E2B API key."

// Defaults, as E2B's SDK has them.
const (
	DefaultDomain   = "e2b.app"
	DefaultTemplate = "base"
	DefaultTimeout  = 5 * time.Minute
	envdPort        = 49983
)

// Metadata keys the driver keeps beside the caller's labels. Labels may not
// use the prefix.
const (
	metaPrefix  = "mcp-sandbox:"
	metaServer  = metaPrefix + "server"
	metaName    = metaPrefix + "name"
	metaCreated = metaPrefix + "created"
	metaNonce   = metaPrefix + "create-nonce"
)

// Settings are the driver's settings, for --help, the README and Config.
var Settings = []providers.Setting{
	{Env: EnvAPIKey, Secret: true, Usage: "E2B API key (required)"},
	{Env: EnvDomain, Default: DefaultDomain, Usage: "E2B domain; the API is https://api.<domain>"},
	{Env: EnvAPIURL, Usage: "API URL, overriding the domain's (self-hosted E2B, or e2bfake)"},
	{Env: EnvSandboxURL, Usage: "envd URL for every sandbox, routing by headers (self-hosted E2B, or e2bfake)"},
	{Env: EnvTemplate, Flag: "e2b-template", Default: DefaultTemplate, Usage: "template for sandboxes created without an image"},
	{Env: EnvAllowed, Flag: "e2b-allowed-templates", Usage: "comma-separated template patterns (* matches anything) sandbox_create may use besides the default template"},
	{Env: EnvTimeout, Flag: "e2b-timeout", Default: DefaultTimeout.String(), Usage: "idle lifetime of a sandbox (1m to 24h), extended while it is used"},
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
	APIKey     string
	Domain     string
	APIURL     string
	SandboxURL string
	Template   string
	// AllowedTemplates are patterns of the templates sandbox_create may
	// name besides Template (see providers.ImagePolicy).
	AllowedTemplates string
	// Timeout is how long an unused sandbox lives; the driver extends it
	// while the sandbox is used, so a working sandbox is not killed.
	Timeout  time.Duration
	ServerID string
	// Capabilities overrides what the driver declares (tests against a fake
	// that does not isolate processes); nil means E2B's.
	Capabilities providers.Capabilities
	// Retries is how many times an idempotent call is retried on a 5xx or a
	// timeout (default 4); RetryBase is the first backoff (default 250ms).
	Retries   int
	RetryBase time.Duration
	// RequestTimeout bounds one control-plane HTTP request (default 30s).
	RequestTimeout time.Duration
	HTTPClient     *http.Client
	Logger         *slog.Logger
}

// OptionsFromConfig reads the settings listed in the package comment.
func OptionsFromConfig(cfg providers.Config) (Options, error) {
	cfg = cfg.WithDefaults(Settings)
	o := Options{
		APIKey:           cfg.Get(EnvAPIKey),
		Domain:           cfg.Get(EnvDomain),
		APIURL:           cfg.Get(EnvAPIURL),
		SandboxURL:       cfg.Get(EnvSandboxURL),
		Template:         cfg.Get(EnvTemplate),
		AllowedTemplates: cfg.Get(EnvAllowed),
		ServerID:         cfg.ServerID,
		Logger:           cfg.Logger,
	}
	if o.APIKey == "" {
		return o, fmt.Errorf("%s", MissingKeyMessage)
	}
	d, err := cfg.Duration(EnvTimeout, time.Minute, 24*time.Hour)
	o.Timeout = d
	return o, err
}

// Provider is the E2B driver.
type Provider struct {
	o      Options
	apiURL string
	http   *http.Client
	log    *slog.Logger

	mu    sync.Mutex
	conns map[string]*conn // cache of connection details, by sandbox ID
}

// New makes a driver; it fails when the API key is missing.
func New(o Options) (*Provider, error) {
	if o.APIKey == "" {
		return nil, fmt.Errorf("%s", MissingKeyMessage)
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.Template == "" {
		o.Template = DefaultTemplate
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ServerID == "" {
		o.ServerID, _ = os.Hostname()
	}
	if o.Capabilities == nil {
		// Each sandbox is its own VM. Timeouts end the command envd started;
		// whether its background children die is up to envd, so kill-tree
		// is not promised.
		o.Capabilities = providers.Capabilities{providers.CapStdin, providers.CapProcessIsolation}
	}
	if o.Retries <= 0 {
		o.Retries = 4
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 250 * time.Millisecond
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{o: o, http: o.HTTPClient, log: o.Logger, conns: map[string]*conn{}}
	if p.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		p.http = &http.Client{Transport: t}
	}
	// E2B's SDK: the apiUrl option, then E2B_API_URL, then https://api.<domain>.
	p.apiURL = strings.TrimRight(o.APIURL, "/")
	if p.apiURL == "" {
		p.apiURL = "https://api." + o.Domain
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

// validID accepts what E2B issues (20 lowercase alphanumerics; older IDs
// carry a client suffix after a dash). Anything else is "not found" and never
// reaches a URL.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)

func notFound(id string) error {
	return providers.Errorf(providers.ErrNotFound, "sandbox %q not found (it may have been destroyed or reached its timeout)", id)
}

func checkID(id string) error {
	if !validID.MatchString(id) {
		return notFound(id)
	}
	return nil
}

// sandboxFrom builds the portable description from E2B metadata.
func (p *Provider) sandboxFrom(id, template string, startedAt time.Time, meta map[string]string, workdir string) providers.Sandbox {
	sb := providers.Sandbox{ID: id, Provider: Name, Image: template, Workdir: workdir, CreatedAt: startedAt, Labels: map[string]string{}}
	for k, v := range meta {
		if !strings.HasPrefix(k, metaPrefix) {
			sb.Labels[k] = v
		}
	}
	sb.Name = meta[metaName]
	if t, err := time.Parse(time.RFC3339Nano, meta[metaCreated]); err == nil {
		sb.CreatedAt = t
	}
	return sb
}

var _ providers.Provider = (*Provider)(nil)

// detached is for cleanup that must happen even when the caller gave up.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}
