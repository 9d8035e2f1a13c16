package daytona

import (
	"context"
	"errors"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// conn is what it takes to talk to one sandbox's daemon. It is a cache: it
// can always be rebuilt from the sandbox ID with the API.
type conn struct {
	id      string
	base    string       // toolboxProxyUrl + "/" + id
	workdir string       // where relative paths and commands start
	tmp     string       // the sandbox's TMPDIR, where the helper goes
	helper  atomic.Int32 // helperUnknown, helperReady or helperUnusable
	// installed is closed once helper is known (a new sandbox's upload
	// may still be on its way when it is first used).
	installed chan struct{}

	mu        sync.Mutex
	spare     string // a session made for the next command (see prepareSession)
	preparing bool
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

// dial learns the toolbox address and working directory of a started
// sandbox (the daemon may take a moment to answer after a start), and puts
// the helper in place. fresh says the sandbox was just made, so it has
// none yet: the upload starts at once and dial does not wait for it (a
// new sandbox is ready for file calls sooner); commands wait for it
// (c.installed).
func (p *Provider) dial(ctx context.Context, sb apiSandbox, fresh bool) (*conn, error) {
	proxy := strings.TrimRight(sb.ToolboxProxyURL, "/")
	if proxy == "" {
		var u struct {
			URL string `json:"url"`
		}
		if _, err := p.api(ctx, http.MethodGet, "/sandbox/"+sb.ID+"/toolbox-proxy-url", nil, &u); err != nil {
			return nil, p.typed(ctx, sb.ID, "find the toolbox of sandbox "+sb.ID, err)
		}
		proxy = strings.TrimRight(u.URL, "/")
	}
	c := &conn{id: sb.ID, base: proxy + "/" + sb.ID, tmp: "/tmp", installed: make(chan struct{})}
	if t := sb.Env["TMPDIR"]; path.IsAbs(t) && path.Clean(t) == t && !strings.ContainsAny(t, "\x00\n") {
		c.tmp = t
	}
	go p.prepareSession(c) // the first command's
	if fresh {
		go func() {
			defer close(c.installed)
			// Not the caller's ctx: its call may end before the upload.
			uctx, cancel := detached(ctx)
			defer cancel()
			p.installHelper(uctx, c, true)
		}()
	}
	var wd struct {
		Dir string `json:"dir"`
	}
	if _, err := p.idempotent(ctx, http.MethodGet, c.base+"/work-dir", nil, &wd); err != nil {
		return nil, p.typed(ctx, sb.ID, "reach the daemon of sandbox "+sb.ID, err)
	}
	if !strings.HasPrefix(wd.Dir, "/") {
		return nil, providers.Errorf(providers.ErrUnavailable, "sandbox %s: the daemon reported working directory %q, not an absolute path", sb.ID, wd.Dir)
	}
	c.workdir = strings.TrimRight(wd.Dir, "/")
	if c.workdir == "" {
		c.workdir = "/"
	}
	p.remember(c) // before the check below, whose call looks it up
	if !fresh {
		p.installHelper(ctx, c, false)
		close(c.installed)
	}
	return c, nil
}

// conn returns the sandbox's connection, from the cache or the API. A
// stopped sandbox (its session ended, or Daytona's auto-stop) is started
// first: it is still the session's, with its files.
func (p *Provider) conn(ctx context.Context, id string) (*conn, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if c := p.cached(id); c != nil {
		return c, nil
	}
	d, err := p.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.State != "started" {
		p.log.Info("daytona: starting a sandbox that is "+d.State, "sandbox", id)
		if d, err = p.start(ctx, d); err != nil {
			return nil, err
		}
	}
	return p.dial(ctx, d, false)
}

// toolbox calls the sandbox's daemon. A daemon that cannot be reached
// (the proxy's 502: the sandbox stopped, or was deleted) is looked up once
// through the API: a deleted sandbox is "not found", a stopped one is
// started and the call made again.
func (p *Provider) toolbox(ctx context.Context, id, method, path string, in, out any) (*conn, error) {
	for attempt := 0; ; attempt++ {
		c, err := p.conn(ctx, id)
		if err != nil {
			return nil, err
		}
		_, err = p.idempotent(ctx, method, c.base+path, in, out)
		if err == nil || attempt > 0 || !p.unreachable(err) {
			return c, err
		}
		p.forget(id)
	}
}

// unreachable reports whether a toolbox failure means the daemon is not
// there (rather than that it refused the call).
func (p *Provider) unreachable(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusBadGateway || ae.Status == http.StatusServiceUnavailable ||
			(ae.Status == http.StatusNotFound && ae.Code == "NOT_FOUND" && strings.HasPrefix(ae.Message, "sandbox"))
	}
	return false
}

// gone returns ErrNotFound (and drops the cache) when the API says the
// sandbox no longer exists, nil otherwise.
func (p *Provider) gone(ctx context.Context, id string) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	_, err := p.get(ctx, id)
	if errors.Is(err, providers.ErrNotFound) {
		p.forget(id)
		return err
	}
	return nil
}

// toolboxErr explains a failed toolbox call about path.
func (p *Provider) toolboxErr(ctx context.Context, id, op, path string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ae *apiError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusNotFound && ae.Code != "NOT_FOUND":
			return providers.Errorf(providers.ErrNotFound, "%s %q: no such file or directory", op, path)
		case ae.Status == http.StatusBadRequest || ae.Status == http.StatusForbidden || ae.Status == http.StatusConflict:
			return providers.Errorf(providers.ErrInvalidArgument, "%s %q: %s", op, path, ae.Message)
		case p.unreachable(err):
			if g := p.gone(ctx, id); g != nil {
				return g
			}
		}
	}
	return p.typed(ctx, id, op+" "+quoteArg(path)+" in sandbox "+id, err)
}

// execute runs a short housekeeping command through the daemon's
// process/execute route (no shell of its own: argv is split at spaces
// outside quotes) and returns its combined output and exit code.
func (p *Provider) execute(ctx context.Context, id, command string, timeout time.Duration) (string, int, error) {
	var res struct {
		ExitCode *int   `json:"exitCode"`
		Code     *int   `json:"code"`
		Result   string `json:"result"`
	}
	body := map[string]any{"command": command}
	if timeout > 0 {
		body["timeout"] = int((timeout + time.Second - 1) / time.Second)
	}
	if _, err := p.toolbox(ctx, id, http.MethodPost, "/process/execute", body, &res); err != nil {
		return "", -1, err
	}
	code := -1
	if res.ExitCode != nil {
		code = *res.ExitCode
	} else if res.Code != nil {
		code = *res.Code
	}
	return res.Result, code, nil
}

// shellCommand is `sh -c script sh args...`, quoted for both a POSIX shell
// and the daemon's argv splitter.
func shellCommand(script string, args ...string) string {
	var b strings.Builder
	b.WriteString("sh -c ")
	b.WriteString(quoteArg(script))
	b.WriteString(" sh")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(quoteArg(a))
	}
	return b.String()
}

// quoteArg makes s one word: single quotes, with each ' written as '"'"'.
func quoteArg(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

// resolve makes a sandbox path absolute, relative paths being taken from
// the sandbox's working directory.
func (c *conn) resolve(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	if c.workdir == "/" {
		return "/" + p
	}
	return c.workdir + "/" + p
}
