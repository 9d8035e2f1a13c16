package daytona

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// apiSandbox is the part of Daytona's Sandbox DTO the driver uses.
type apiSandbox struct {
	ID              string            `json:"id"`
	Snapshot        string            `json:"snapshot"`
	Labels          map[string]string `json:"labels"`
	Env             map[string]string `json:"env"`
	State           string            `json:"state"`
	ErrorReason     string            `json:"errorReason"`
	ToolboxProxyURL string            `json:"toolboxProxyUrl"`
	CreatedAt       time.Time         `json:"createdAt"`
}

type apiList struct {
	Items      []apiSandbox `json:"items"`
	NextCursor *string      `json:"nextCursor"`
}

// States a sandbox may be in on its way to "started" (or back).
var (
	transitional = map[string]bool{"creating": true, "restoring": true, "starting": true, "pending_build": true,
		"building_snapshot": true, "pulling_snapshot": true, "resuming": true, "unknown": true, "": true}
	failed = map[string]bool{"error": true, "build_failed": true}
)

func (p *Provider) Create(ctx context.Context, opts providers.CreateOptions) (providers.Sandbox, error) {
	if err := providers.ValidateEnv(opts.Env); err != nil {
		return providers.Sandbox{}, err
	}
	// Snapshots and images cost money and time: which ones an agent may
	// start is the operator's choice.
	if policy := providers.NewImagePolicy(p.o.Snapshot, p.o.AllowedImages); opts.Image != "" && !policy.Allowed(opts.Image) {
		return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument,
			"image %q is not allowed on this server: the operator allows the default snapshot and snapshots or images matching %s (%q); omit image to use the default",
			opts.Image, EnvAllowed, policy.Patterns())
	}
	labels := map[string]string{}
	for k, v := range opts.Labels {
		if strings.HasPrefix(k, labelPrefix) {
			return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument, "label %q uses the reserved prefix %q", k, labelPrefix)
		}
		labels[k] = v
	}
	nonce := make([]byte, 12)
	crand.Read(nonce)
	created := time.Now().UTC()
	labels[labelServer] = p.o.ServerID
	labels[labelName] = opts.Name
	labels[labelCreated] = created.Format(time.RFC3339Nano)
	labels[labelExpires] = created.Add(p.o.Expiry).Format(time.RFC3339Nano)
	labels[labelNonce] = hex.EncodeToString(nonce)
	body := map[string]any{"labels": labels, "target": p.o.Target}
	if len(opts.Env) > 0 {
		body["env"] = opts.Env
	}
	if p.o.DisableAutoStop {
		body["autoStopInterval"] = 0
	}
	what := "create a Daytona sandbox"
	switch image := opts.Image; {
	case strings.HasPrefix(image, imagePrefix):
		ref := strings.TrimPrefix(image, imagePrefix)
		if ref == "" || strings.ContainsAny(ref, " \n\r\t") {
			return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument, "image %q: give a container image reference after %q, e.g. image:python:3.12", image, imagePrefix)
		}
		body["buildInfo"] = map[string]any{"dockerfileContent": "FROM " + ref + "\n"}
		labels[labelImage] = image
		what += " from image " + ref
	case image != "":
		body["snapshot"] = image
		what += " from snapshot " + image
	case p.o.Snapshot != "":
		body["snapshot"] = p.o.Snapshot
		what += " from snapshot " + p.o.Snapshot
	}

	// A create is not idempotent: a failed attempt may still have made a
	// sandbox whose answer was lost. Each attempt carries the nonce label,
	// and anything carrying it is deleted before trying again or giving up.
	var sb apiSandbox
	began := time.Now()
	for attempt := 1; ; attempt++ {
		err := p.do(ctx, http.MethodPost, p.apiURL+"/sandbox", body, &sb)
		if err == nil {
			break
		}
		if !providers.Unreachable(err) { // a request never delivered made nothing
			p.deleteByNonce(ctx, labels[labelNonce])
		}
		if !retryable(ctx, err) || attempt > p.o.Retries || !p.pause(ctx, began, attempt, err) {
			return providers.Sandbox{}, p.typed(ctx, "", what, err)
		}
		p.log.Debug("daytona: retrying create", "attempt", attempt, "err", err)
	}
	sb, err := p.waitStarted(ctx, sb)
	if err == nil {
		var c *conn
		if c, err = p.dial(ctx, sb, true); err == nil {
			return p.sandboxFrom(sb, c.workdir), nil
		}
	}
	// The sandbox exists but is unusable: delete it rather than leak it.
	dctx, cancel := detached(ctx)
	defer cancel()
	if _, derr := p.api(dctx, http.MethodDelete, "/sandbox/"+sb.ID, nil, nil); derr != nil && !isStatus(derr, http.StatusNotFound) {
		p.log.Warn("daytona: cannot delete a sandbox whose start failed", "sandbox", sb.ID, "err", derr)
	}
	if ctx.Err() != nil {
		return providers.Sandbox{}, ctx.Err()
	}
	return providers.Sandbox{}, err
}

// deleteByNonce deletes every sandbox made by a failed create attempt.
func (p *Provider) deleteByNonce(ctx context.Context, nonce string) {
	ctx, cancel := detached(ctx)
	defer cancel()
	found, err := p.list(ctx, map[string]string{labelNonce: nonce})
	if err != nil {
		p.log.Warn("daytona: cannot check for a sandbox left by a failed create", "err", err)
		return
	}
	for _, s := range found {
		if _, err := p.api(ctx, http.MethodDelete, "/sandbox/"+s.ID, nil, nil); err != nil && !isStatus(err, http.StatusNotFound) {
			p.log.Warn("daytona: cannot delete a sandbox left by a failed create", "sandbox", s.ID, "err", err)
		}
	}
}

// waitStarted polls the sandbox until it is started, with backoff (100ms
// doubling to 1s), for at most StartTimeout.
func (p *Provider) waitStarted(ctx context.Context, sb apiSandbox) (apiSandbox, error) {
	deadline := time.Now().Add(p.o.StartTimeout)
	delay := 100 * time.Millisecond
	for {
		switch {
		case sb.State == "started":
			return sb, nil
		case failed[sb.State]:
			return sb, providers.Errorf(providers.ErrUnavailable, "Daytona sandbox %s failed to start (state %s: %s)", sb.ID, sb.State, sb.ErrorReason)
		case !transitional[sb.State]:
			return sb, providers.Errorf(providers.ErrUnavailable, "Daytona sandbox %s is %s, not starting", sb.ID, sb.State)
		case time.Now().After(deadline):
			return sb, providers.Errorf(providers.ErrTimeout, "Daytona sandbox %s did not start within %v (still %s); it was deleted, try again", sb.ID, p.o.StartTimeout, sb.State)
		}
		select {
		case <-ctx.Done():
			return sb, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
		id := sb.ID
		if _, err := p.api(ctx, http.MethodGet, "/sandbox/"+id, nil, &sb); err != nil {
			return apiSandbox{ID: id}, p.typed(ctx, id, "wait for sandbox "+id+" to start", err)
		}
	}
}

// get reads a sandbox this project made; others are "not found".
func (p *Provider) get(ctx context.Context, id string) (apiSandbox, error) {
	if err := checkID(id); err != nil {
		return apiSandbox{}, err
	}
	var d apiSandbox
	if _, err := p.api(ctx, http.MethodGet, "/sandbox/"+url.PathEscape(id), nil, &d); err != nil {
		return apiSandbox{}, p.typed(ctx, id, "get sandbox "+id, err)
	}
	if _, ours := d.Labels[labelServer]; !ours || d.ID != id || d.State == "destroyed" || d.State == "destroying" {
		return apiSandbox{}, notFound(id)
	}
	return d, nil
}

func (p *Provider) Get(ctx context.Context, id string) (providers.Sandbox, error) {
	d, err := p.get(ctx, id)
	if err != nil {
		return providers.Sandbox{}, err
	}
	if d.State != "started" { // describing a stopped sandbox does not start it
		workdir := ""
		if c := p.cached(id); c != nil {
			workdir = c.workdir
		}
		return p.sandboxFrom(d, workdir), nil
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.Sandbox{}, err
	}
	return p.sandboxFrom(d, c.workdir), nil
}

// list pages through GET /sandbox with a labels filter (a JSON object).
func (p *Provider) list(ctx context.Context, match map[string]string) ([]apiSandbox, error) {
	q := url.Values{"limit": {"100"}}
	if len(match) > 0 {
		b, _ := json.Marshal(match)
		q.Set("labels", string(b))
	}
	var all []apiSandbox
	for page := 0; page < 100; page++ { // at most 10,000 sandboxes
		var l apiList
		if _, err := p.api(ctx, http.MethodGet, "/sandbox?"+q.Encode(), nil, &l); err != nil {
			return nil, err
		}
		all = append(all, l.Items...)
		if l.NextCursor == nil || *l.NextCursor == "" {
			break
		}
		q.Set("cursor", *l.NextCursor)
	}
	return all, nil
}

// List returns the sandboxes this project made (any server) whose labels
// include match, stopped ones too: a later session can find and restart
// them.
func (p *Provider) List(ctx context.Context, match map[string]string) ([]providers.Sandbox, error) {
	found, err := p.list(ctx, match)
	if err != nil {
		return nil, p.typed(ctx, "", "list Daytona sandboxes", err)
	}
	out := make([]providers.Sandbox, 0, len(found))
	for _, s := range found {
		if _, ours := s.Labels[labelServer]; !ours || s.State == "destroyed" || s.State == "destroying" {
			continue
		}
		workdir := ""
		if c := p.cached(s.ID); c != nil {
			workdir = c.workdir
		}
		out = append(out, p.sandboxFrom(s, workdir))
	}
	return out, nil
}

// Destroy deletes the sandbox.
func (p *Provider) Destroy(ctx context.Context, id string) error {
	// Only this server's sandboxes may be deleted: one it reached before
	// was checked then (the cache holds no other); else the API says.
	if p.cached(id) == nil {
		if _, err := p.get(ctx, id); err != nil {
			return err
		}
	}
	p.forget(id)
	attempts, err := p.api(ctx, http.MethodDelete, "/sandbox/"+id, nil, nil)
	if isStatus(err, http.StatusNotFound) && attempts > 1 {
		return nil // an earlier attempt deleted it but its answer was lost
	}
	if err != nil {
		return p.typed(ctx, id, "delete sandbox "+id, err)
	}
	return nil
}

// Stop stops the sandbox: its processes end, its files stay, and it no
// longer costs compute. Commands and file calls start it again.
func (p *Provider) Stop(ctx context.Context, id string) error {
	d, err := p.get(ctx, id)
	if err != nil {
		return err
	}
	p.forget(id)
	if d.State == "stopped" {
		return nil
	}
	if _, err := p.api(ctx, http.MethodPost, "/sandbox/"+id+"/stop?force=false", nil, nil); err != nil {
		return p.typed(ctx, id, "stop sandbox "+id, err)
	}
	return nil
}

// Start starts a stopped sandbox and waits until it runs.
func (p *Provider) Start(ctx context.Context, id string) error {
	d, err := p.get(ctx, id)
	if err != nil {
		return err
	}
	_, err = p.start(ctx, d)
	return err
}

func (p *Provider) start(ctx context.Context, d apiSandbox) (apiSandbox, error) {
	if d.State == "started" {
		return d, nil
	}
	if !transitional[d.State] {
		if _, err := p.api(ctx, http.MethodPost, "/sandbox/"+d.ID+"/start", nil, &d); err != nil {
			return d, p.typed(ctx, d.ID, "start sandbox "+d.ID, err)
		}
	}
	return p.waitStarted(ctx, d)
}

// Release is what happens to a sandbox when the session that owns it ends:
// it is stopped (DAYTONA_DELETE_ON_CLOSE=false, the default), so a later
// session can find it by its labels and start it again, or deleted.
func (p *Provider) Release(ctx context.Context, id string) error {
	if p.o.DeleteOnClose {
		return p.Destroy(ctx, id)
	}
	return p.Stop(ctx, id)
}

var _ providers.Reaper = (*Provider)(nil)

// Reap releases this server's running sandboxes (label mcp-sandbox.server)
// that providers.Reapable says may go: at once when their owner is known to
// be gone, after their expiry (created + MCP_SANDBOX_DAYTONA_EXPIRY) when
// it cannot be known or they are labelled keep. Released means stopped, or
// deleted with DAYTONA_DELETE_ON_CLOSE=true. A stopped sandbox was kept on
// purpose (or auto-stopped, costing no compute) and is never touched.
func (p *Provider) Reap(ctx context.Context, owner func(label string) providers.Liveness) ([]string, error) {
	found, err := p.list(ctx, map[string]string{labelServer: p.o.ServerID})
	if err != nil {
		return nil, p.typed(ctx, "", "list sandboxes to reap", err)
	}
	now := time.Now()
	var reaped []string
	var errs []error
	for _, s := range found {
		if s.Labels[labelServer] != p.o.ServerID || s.State != "started" { // whatever the API made of the filter
			continue
		}
		labels := map[string]string{}
		for k, v := range s.Labels {
			if !strings.HasPrefix(k, labelPrefix) {
				labels[k] = v
			}
		}
		expires, err := time.Parse(time.RFC3339Nano, s.Labels[labelExpires])
		expired := err == nil && !now.Before(expires)
		if !providers.Reapable(labels, expired, owner) {
			continue
		}
		if err := p.Release(ctx, s.ID); err != nil && !errors.Is(err, providers.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		p.log.Info("reaped a sandbox", "sandbox", s.ID, "owner", labels[providers.LabelSession], "expired", expired, "deleted", p.o.DeleteOnClose)
		reaped = append(reaped, s.ID)
	}
	return reaped, errors.Join(errs...)
}
