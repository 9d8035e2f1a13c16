package e2b

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// apiError is a failed control-plane call.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("E2B API answered %d: %s", e.Status, e.Message) }

// retryable says whether an attempt may be repeated: what providers calls
// transient (a 5xx, a 429, a timeout, a broken connection), never the
// caller's own cancellation, a refusal or an unreachable API.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return providers.TransientStatus(ae.Status)
	}
	return providers.Transient(err)
}

// backoff sleeps before attempt n (1-based), with jitter; false if ctx ended.
func (p *Provider) backoff(ctx context.Context, n int) bool {
	d := p.o.RetryBase << (n - 1)
	d = d/2 + rand.N(d/2+1)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// call makes one control-plane request; out, when non-nil, receives the JSON
// answer of a 2xx.
func (p *Provider) call(ctx context.Context, method, path string, in, out any) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.RequestTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.apiURL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-API-Key", p.o.APIKey)
	req.Header.Set("User-Agent", "mcp-sandbox")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return nil, &apiError{Status: resp.StatusCode, Message: e.Message}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, fmt.Errorf("E2B API sent an unreadable answer to %s %s: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// idempotent repeats call on retryable failures. attempts tells how many
// requests were made, so a caller can read a 404 after a failed DELETE as
// success.
func (p *Provider) idempotent(ctx context.Context, method, path string, in, out any) (h http.Header, attempts int, err error) {
	for attempts = 1; ; attempts++ {
		h, err = p.call(ctx, method, path, in, out)
		if err == nil || !retryable(ctx, err) || attempts > p.o.Retries {
			return h, attempts, err
		}
		p.log.Debug("e2b: retrying", "method", method, "path", path, "attempt", attempts, "err", err)
		if !p.backoff(ctx, attempts) {
			return h, attempts, err
		}
	}
}

// typed turns an API failure into a providers error that says what to do.
func (p *Provider) typed(ctx context.Context, id, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // the caller gave up; nothing to explain
	}
	var ae *apiError
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusNotFound && id != "":
			return notFound(id)
		case ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden:
			return providers.Errorf(providers.ErrDenied, "%s: E2B rejected the API key (%s); check %s", what, ae.Message, EnvAPIKey)
		case ae.Status == http.StatusBadRequest || ae.Status == http.StatusNotFound:
			return providers.Errorf(providers.ErrInvalidArgument, "%s: %s", what, ae.Message)
		case ae.Status == http.StatusTooManyRequests:
			return providers.Errorf(providers.ErrUnavailable, "%s: E2B rate limit or sandbox quota reached (%s); retry later or destroy unused sandboxes", what, ae.Message)
		}
		if providers.TransientStatus(ae.Status) {
			return providers.Errorf(providers.ErrUnavailable, "%s: %w, also on retrying; try again later", what, err)
		}
		return providers.Errorf(providers.ErrInvalidArgument, "%s: %w", what, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return providers.Errorf(providers.ErrUnavailable, "%s: the E2B API did not answer within %v, even after retries; try again later", what, p.o.RequestTimeout)
	}
	if !providers.Transient(err) {
		return providers.Errorf(providers.ErrUnavailable, "%s: cannot reach the E2B API at %s (%s / %s): %w; check the address and the network", what, p.apiURL, EnvAPIURL, EnvDomain, err)
	}
	return providers.Errorf(providers.ErrUnavailable, "%s: the E2B API at %s failed, also on retrying: %w; try again later", what, p.apiURL, err)
}

// Wire types (E2B's OpenAPI spec).
type apiSandbox struct {
	SandboxID       string  `json:"sandboxID"`
	TemplateID      string  `json:"templateID"`
	EnvdVersion     string  `json:"envdVersion"`
	EnvdAccessToken string  `json:"envdAccessToken"`
	Domain          *string `json:"domain"`
}

type apiListed struct {
	SandboxID  string            `json:"sandboxID"`
	TemplateID string            `json:"templateID"`
	StartedAt  time.Time         `json:"startedAt"`
	State      string            `json:"state"`
	Metadata   map[string]string `json:"metadata"`
}

func seconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

func (p *Provider) Create(ctx context.Context, opts providers.CreateOptions) (providers.Sandbox, error) {
	if err := providers.ValidateEnv(opts.Env); err != nil {
		return providers.Sandbox{}, err
	}
	meta := map[string]string{}
	for k, v := range opts.Labels {
		if strings.HasPrefix(k, metaPrefix) {
			return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument, "label %q uses the reserved prefix %q", k, metaPrefix)
		}
		meta[k] = v
	}
	nonce := make([]byte, 12)
	crand.Read(nonce)
	created := time.Now().UTC()
	meta[metaServer] = p.o.ServerID
	meta[metaName] = opts.Name
	meta[metaCreated] = created.Format(time.RFC3339Nano)
	meta[metaNonce] = hex.EncodeToString(nonce)
	template := opts.Image
	if template == "" {
		template = p.o.Template
	}
	if policy := providers.NewImagePolicy(p.o.Template, p.o.AllowedTemplates); !policy.Allowed(template) {
		return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument,
			"template %q is not allowed on this server: the operator allows the default template %q and templates matching %s (%q); omit image to use the default",
			template, p.o.Template, EnvAllowed, policy.Patterns())
	}
	body := map[string]any{
		"templateID": template,
		"timeout":    seconds(p.o.Timeout),
		"metadata":   meta,
	}
	if len(opts.Env) > 0 {
		body["envVars"] = opts.Env
	}

	// A create is not idempotent: a failed attempt may still have made a
	// sandbox whose answer was lost. Each attempt is tagged with a nonce, and
	// anything carrying it is killed before trying again or giving up.
	var sb apiSandbox
	var err error
	for attempt := 1; ; attempt++ {
		_, err = p.call(ctx, http.MethodPost, "/v2/sandboxes", body, &sb)
		if err == nil {
			break
		}
		if !providers.Unreachable(err) { // a request never delivered made nothing
			p.reap(ctx, meta[metaNonce])
		}
		if !retryable(ctx, err) || attempt > p.o.Retries || !p.backoff(ctx, attempt) {
			return providers.Sandbox{}, p.typed(ctx, "", fmt.Sprintf("create an E2B sandbox from template %q", template), err)
		}
		p.log.Debug("e2b: retrying create", "attempt", attempt, "err", err)
	}

	c, err := p.dial(ctx, sb)
	if err == nil {
		p.remember(c)
		return p.sandboxFrom(sb.SandboxID, template, created, meta, c.workdir), nil
	}
	// The sandbox exists but is unusable: kill it rather than leak it.
	kctx, cancel := detached(ctx)
	defer cancel()
	if _, _, kerr := p.idempotent(kctx, http.MethodDelete, "/sandboxes/"+sb.SandboxID, nil, nil); kerr != nil {
		p.log.Warn("e2b: could not kill a sandbox whose start failed", "sandbox", sb.SandboxID, "err", kerr)
	}
	return providers.Sandbox{}, err
}

// reap kills every sandbox made by a failed create attempt.
func (p *Provider) reap(ctx context.Context, nonce string) {
	ctx, cancel := detached(ctx)
	defer cancel()
	found, err := p.list(ctx, map[string]string{metaNonce: nonce})
	if err != nil {
		p.log.Warn("e2b: cannot check for a sandbox left by a failed create", "err", err)
		return
	}
	for _, s := range found {
		if _, _, err := p.idempotent(ctx, http.MethodDelete, "/sandboxes/"+s.SandboxID, nil, nil); err != nil {
			p.log.Warn("e2b: cannot kill a sandbox left by a failed create", "sandbox", s.SandboxID, "err", err)
		}
	}
}

func (p *Provider) Get(ctx context.Context, id string) (providers.Sandbox, error) {
	if err := checkID(id); err != nil {
		return providers.Sandbox{}, err
	}
	var d apiListed
	if _, _, err := p.idempotent(ctx, http.MethodGet, "/sandboxes/"+id, nil, &d); err != nil {
		return providers.Sandbox{}, p.typed(ctx, id, "get sandbox "+id, err)
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.Sandbox{}, err
	}
	return p.sandboxFrom(id, d.TemplateID, d.StartedAt, d.Metadata, c.workdir), nil
}

// list pages through GET /v2/sandboxes with a metadata filter, encoded the
// way E2B's SDK does (a query string of its own, keys and values escaped).
func (p *Provider) list(ctx context.Context, match map[string]string) ([]apiListed, error) {
	q := url.Values{"state": {"running,paused"}, "limit": {"100"}}
	if len(match) > 0 {
		m := url.Values{}
		for k, v := range match {
			m.Set(url.QueryEscape(k), url.QueryEscape(v))
		}
		q.Set("metadata", m.Encode())
	}
	var all []apiListed
	for page := 0; page < 100; page++ { // at most 10,000 sandboxes
		var batch []apiListed
		h, _, err := p.idempotent(ctx, http.MethodGet, "/v2/sandboxes?"+q.Encode(), nil, &batch)
		if err != nil {
			return nil, err
		}
		all = append(all, batch...)
		next := h.Get("X-Next-Token")
		if next == "" {
			break
		}
		q.Set("nextToken", next)
	}
	return all, nil
}

// List returns the sandboxes this project made (any server) whose labels
// include match.
func (p *Provider) List(ctx context.Context, match map[string]string) ([]providers.Sandbox, error) {
	found, err := p.list(ctx, match)
	if err != nil {
		return nil, p.typed(ctx, "", "list E2B sandboxes", err)
	}
	out := make([]providers.Sandbox, 0, len(found))
	for _, s := range found {
		if _, ours := s.Metadata[metaServer]; !ours {
			continue
		}
		workdir := defaultWorkdir
		if c := p.cached(s.SandboxID); c != nil {
			workdir = c.workdir
		}
		out = append(out, p.sandboxFrom(s.SandboxID, s.TemplateID, s.StartedAt, s.Metadata, workdir))
	}
	return out, nil
}

func (p *Provider) Destroy(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	p.forget(id)
	_, attempts, err := p.idempotent(ctx, http.MethodDelete, "/sandboxes/"+id, nil, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && attempts > 1 {
		return nil // an earlier attempt killed it but its answer was lost
	}
	if err != nil {
		return p.typed(ctx, id, "destroy sandbox "+id, err)
	}
	return nil
}

// extend sets the sandbox to live p.o.Timeout from now.
func (p *Provider) extend(ctx context.Context, id string) error {
	_, _, err := p.idempotent(ctx, http.MethodPost, "/sandboxes/"+id+"/timeout", map[string]int{"timeout": seconds(p.o.Timeout)}, nil)
	return err
}
