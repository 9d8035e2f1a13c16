package e2b

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	fspb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem/filesystemconnect"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/process/processconnect"
)

// defaultWorkdir is the home of envd's default user in E2B's templates; it
// is only reported when the real one has not been asked yet (List).
const defaultWorkdir = "/home/user"

// supportedDomains are E2B's own; there the SDK reaches every sandbox via
// one shared host and routes by header.
var supportedDomains = []string{"e2b.app", "e2b.dev", "e2b.pro", "e2b-staging.dev"}

// conn is what it takes to talk to one sandbox's envd. It is a cache: it can
// always be rebuilt from the sandbox ID with the API's connect call.
type conn struct {
	id      string
	baseURL string
	http    *http.Client // adds the routing and access-token headers
	process processconnect.ProcessClient
	fs      filesystemconnect.FilesystemClient
	workdir string

	mu       sync.Mutex
	extended time.Time // when the sandbox's timeout was last pushed back
}

// envdURL follows E2B's SDK (ConnectionConfig.getSandboxUrl).
func (p *Provider) envdURL(id string, domain *string) string {
	if p.o.SandboxURL != "" {
		return strings.TrimRight(p.o.SandboxURL, "/")
	}
	d := p.o.Domain
	if domain != nil && *domain != "" {
		d = *domain
	}
	if slices.Contains(supportedDomains, d) {
		return "https://sandbox." + d
	}
	return "https://" + strconv.Itoa(envdPort) + "-" + id + "." + d
}

// headerTransport adds the headers E2B's SDK sends to envd.
type headerTransport struct {
	base  http.RoundTripper
	id    string
	token string
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("E2b-Sandbox-Id", t.id)
	r.Header.Set("E2b-Sandbox-Port", strconv.Itoa(envdPort))
	if t.token != "" {
		r.Header.Set("X-Access-Token", t.token)
	}
	r.Header.Set("User-Agent", "mcp-sandbox")
	return t.base.RoundTrip(r)
}

// dial builds a conn from the API's answer and learns the home directory
// (envd resolves relative paths against it and starts commands there).
func (p *Provider) dial(ctx context.Context, sb apiSandbox) (*conn, error) {
	base := p.http.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c := &conn{id: sb.SandboxID, baseURL: p.envdURL(sb.SandboxID, sb.Domain), extended: time.Now()}
	c.http = &http.Client{Transport: headerTransport{base: base, id: sb.SandboxID, token: sb.EnvdAccessToken}}
	c.process = processconnect.NewProcessClient(c.http, c.baseURL)
	c.fs = filesystemconnect.NewFilesystemClient(c.http, c.baseURL)
	var res *connect.Response[fspb.StatResponse]
	var err error
	for attempt := 1; ; attempt++ {
		res, err = c.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: "."}))
		if err == nil || connect.CodeOf(err) != connect.CodeUnavailable || attempt > p.o.Retries || !p.backoff(ctx, attempt) {
			break
		}
	}
	if err != nil {
		return nil, providers.Errorf(providers.ErrUnavailable, "sandbox %s started but its envd daemon does not answer at %s: %w", sb.SandboxID, c.baseURL, err)
	}
	c.workdir = res.Msg.GetEntry().GetPath()
	if !strings.HasPrefix(c.workdir, "/") {
		return nil, providers.Errorf(providers.ErrUnavailable, "sandbox %s: envd reported home directory %q, not an absolute path", sb.SandboxID, c.workdir)
	}
	return c, nil
}

func (p *Provider) cached(id string) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[id]
}

func (p *Provider) remember(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c.id] = c
}

func (p *Provider) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, id)
}

// conn returns the sandbox's connection, asking the API (connect, which also
// resumes a paused sandbox and pushes its timeout back) when not cached, and
// extending the timeout of a sandbox in use at most every quarter timeout.
func (p *Provider) conn(ctx context.Context, id string) (*conn, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if c := p.cached(id); c != nil {
		p.keepAlive(ctx, c)
		return c, nil
	}
	var sb apiSandbox
	_, _, err := p.idempotent(ctx, http.MethodPost, "/v2/sandboxes/"+id+"/connect", map[string]int{"timeout": seconds(p.o.Timeout)}, &sb)
	if err != nil {
		return nil, p.typed(ctx, id, "connect to sandbox "+id, err)
	}
	if sb.SandboxID == "" {
		sb.SandboxID = id
	}
	c, err := p.dial(ctx, sb)
	if err != nil {
		return nil, err
	}
	p.remember(c)
	return c, nil
}

// keepAlive pushes the sandbox's timeout back when a quarter of it has
// passed since the last time, so a sandbox in use is never killed under it.
func (p *Provider) keepAlive(ctx context.Context, c *conn) {
	c.mu.Lock()
	due := time.Since(c.extended) >= p.o.Timeout/4
	if due {
		c.extended = time.Now()
	}
	c.mu.Unlock()
	if !due {
		return
	}
	if err := p.extend(ctx, c.id); err != nil {
		p.log.Warn("e2b: cannot extend the sandbox's timeout", "sandbox", c.id, "err", err)
	}
}

// keepAliveWhile extends the timeout during a long call until stop is called.
func (p *Provider) keepAliveWhile(ctx context.Context, c *conn) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(p.o.Timeout / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				p.keepAlive(ctx, c)
			}
		}
	}()
	return func() { close(done) }
}

// envdErr turns an envd failure about path p into a typed error. A sandbox
// that is gone (E2B's proxy answers 502, envd's token no longer matches) is
// ErrNotFound once the API confirms it.
func (p *Provider) envdErr(ctx context.Context, id, op, path string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	switch connect.CodeOf(err) {
	case connect.CodeNotFound:
		return providers.Errorf(providers.ErrNotFound, "%s %q: no such file or directory", op, path)
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeAlreadyExists, connect.CodePermissionDenied, connect.CodeOutOfRange:
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: %s", op, path, msg)
	case connect.CodeDeadlineExceeded:
		return providers.Errorf(providers.ErrTimeout, "%s %q: timed out: %s", op, path, msg)
	case connect.CodeUnavailable, connect.CodeUnauthenticated:
		if gone := p.gone(ctx, id); gone != nil {
			return gone
		}
	}
	return providers.Errorf(providers.ErrUnavailable, "%s %q in sandbox %s: %w", op, path, id, err)
}

// gone returns ErrNotFound (and drops the cache) when the API says the
// sandbox no longer exists, nil otherwise.
func (p *Provider) gone(ctx context.Context, id string) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	_, err := p.call(ctx, http.MethodGet, "/sandboxes/"+id, nil, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		p.forget(id)
		return notFound(id)
	}
	return nil
}

// resolve makes a sandbox path absolute, relative paths being taken from
// the sandbox's home directory (as envd does, but explicit so results do not
// depend on envd's user).
func (c *conn) resolve(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return c.workdir + "/" + p
}
