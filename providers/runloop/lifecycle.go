package runloop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// devboxView is the part of Runloop's DevboxView the driver reads.
type devboxView struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Status       string            `json:"status"`
	CreateTimeMs int64             `json:"create_time_ms"`
	BlueprintID  string            `json:"blueprint_id"`
	SnapshotID   string            `json:"snapshot_id"`
	Metadata     map[string]string `json:"metadata"`
	FailReason   string            `json:"failure_reason"`
}

// live statuses are those of a devbox that exists and can come back to
// running; shutdown and failure are final.
var liveStatuses = []string{"provisioning", "initializing", "running", "suspending", "suspended", "resuming"}

func final(status string) bool { return status == "shutdown" || status == "failure" }

// image is how CreateOptions.Image or the configured blueprint reaches the
// API: a bpt_ ID, a snp_ snapshot ID, or a blueprint name.
func image(body map[string]any, img string) {
	switch {
	case img == "":
	case strings.HasPrefix(img, "bpt_"):
		body["blueprint_id"] = img
	case strings.HasPrefix(img, "snp_"):
		body["snapshot_id"] = img
	default:
		body["blueprint_name"] = img
	}
}

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
	created := time.Now().UTC()
	meta[metaServer] = p.o.ServerID
	meta[metaName] = opts.Name
	meta[metaCreated] = created.Format(time.RFC3339Nano)
	meta[metaExpires] = created.Add(p.o.Expiry).Format(time.RFC3339Nano)
	meta[metaNonce] = newKey()
	img := opts.Image
	if img == "" {
		img = p.o.Blueprint
	}
	body := map[string]any{
		"name":     opts.Name,
		"metadata": meta,
		"launch_parameters": map[string]any{
			"keep_alive_time_seconds": int((p.o.KeepAlive + time.Second - 1) / time.Second),
			"resource_size_request":   p.o.ResourceSize,
		},
	}
	if len(opts.Env) > 0 {
		body["environment_variables"] = opts.Env
	}
	image(body, img)
	what := "create a Runloop devbox"
	if img != "" {
		what += " from " + img
	}

	// Retries carry the same idempotency key, so the API does not make a
	// second devbox for a request whose answer was lost; should it make
	// one anyway, the nonce in its metadata finds it below.
	var d devboxView
	// create_and_await_running holds until the devbox runs (or a long
	// poll's worth of time passed), saving a round trip on a quick start.
	err := p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/create_and_await_running", json: body, key: meta[metaNonce], hold: p.o.LongPoll}, &d)
	if err != nil {
		p.shutdownNonce(ctx, meta[metaNonce])
		return providers.Sandbox{}, p.typed(ctx, "", what, err)
	}
	if err := p.awaitRunning(ctx, &d); err != nil {
		p.abandon(ctx, d.ID)
		return providers.Sandbox{}, err
	}
	in, err := p.info(ctx, d.ID)
	if err != nil {
		p.abandon(ctx, d.ID)
		return providers.Sandbox{}, err
	}
	p.installHelper(ctx, d.ID, in)
	p.touched(d.ID)
	return p.sandboxFrom(d, in.home), nil
}

// awaitRunning long-polls until the devbox runs, fails or the create
// timeout passes; no client-side sleeps.
func (p *Provider) awaitRunning(ctx context.Context, d *devboxView) error {
	wctx, cancel := context.WithTimeout(ctx, p.o.CreateWait)
	defer cancel()
	for d.Status != "running" {
		if final(d.Status) || d.Status == "suspended" {
			reason := d.FailReason
			if reason == "" {
				reason = "no reason given"
			}
			return providers.Errorf(providers.ErrUnavailable, "Runloop devbox %s ended up %s instead of running (%s)", d.ID, d.Status, reason)
		}
		err := p.longPoll(wctx, "/v1/devboxes/"+d.ID+"/wait_for_status", []string{"running", "failure", "shutdown"}, d)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil:
			return providers.Errorf(providers.ErrTimeout, "Runloop devbox %s was still %s after %v (%s); it was shut down, try again or raise %s", d.ID, d.Status, p.o.CreateWait, "the wait for it to run", EnvCreateWait)
		case err != nil:
			return p.typed(ctx, d.ID, "wait for devbox "+d.ID+" to run", err)
		}
	}
	return nil
}

// abandon shuts down a devbox whose create failed part-way.
func (p *Provider) abandon(ctx context.Context, id string) {
	sctx, cancel := detached(ctx)
	defer cancel()
	if err := p.shutdown(sctx, id); err != nil && !errors.Is(err, providers.ErrNotFound) {
		p.log.Warn("runloop: could not shut down a devbox whose create failed", "devbox", id, "err", err)
	}
}

// shutdownNonce shuts down whatever a failed create attempt made.
func (p *Provider) shutdownNonce(ctx context.Context, nonce string) {
	sctx, cancel := detached(ctx)
	defer cancel()
	found, err := p.list(sctx)
	if err != nil {
		p.log.Warn("runloop: cannot check for a devbox left by a failed create", "err", err)
		return
	}
	for _, d := range found {
		if d.Metadata[metaNonce] == nonce {
			p.abandon(sctx, d.ID)
		}
	}
}

func (p *Provider) sandboxFrom(d devboxView, home string) providers.Sandbox {
	sb := providers.Sandbox{ID: d.ID, Provider: Name, Name: d.Metadata[metaName], Workdir: home,
		CreatedAt: time.UnixMilli(d.CreateTimeMs).UTC(), Labels: map[string]string{}}
	sb.Image = d.Metadata["blueprint"]
	if sb.Image == "" {
		sb.Image = d.BlueprintID + d.SnapshotID
	}
	for k, v := range d.Metadata {
		if !strings.HasPrefix(k, metaPrefix) {
			sb.Labels[k] = v
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, d.Metadata[metaCreated]); err == nil {
		sb.CreatedAt = t
	}
	return sb
}

// devbox fetches a devbox that is not shut down.
func (p *Provider) devbox(ctx context.Context, id string) (devboxView, error) {
	if err := checkID(id); err != nil {
		return devboxView{}, err
	}
	var d devboxView
	if err := p.call(ctx, &request{method: http.MethodGet, path: "/v1/devboxes/" + id}, &d); err != nil {
		return d, p.typed(ctx, id, "get devbox "+id, err)
	}
	if final(d.Status) {
		return d, notFound(id)
	}
	return d, nil
}

func (p *Provider) Get(ctx context.Context, id string) (providers.Sandbox, error) {
	d, err := p.devbox(ctx, id)
	if err != nil {
		return providers.Sandbox{}, err
	}
	home, err := p.home(ctx, id)
	if err != nil {
		return providers.Sandbox{}, err
	}
	return p.sandboxFrom(d, home), nil
}

// list pages through every devbox in a live status. The API filters by one
// status at a time and not by metadata, so the statuses are asked for
// together and the metadata is matched here.
func (p *Provider) list(ctx context.Context) ([]devboxView, error) {
	var (
		mu   sync.Mutex
		all  []devboxView
		errs []error
		wg   sync.WaitGroup
	)
	for _, status := range liveStatuses {
		wg.Go(func() {
			q := url.Values{"status": {status}, "limit": {"100"}}
			for page := 0; page < 100; page++ { // at most 10,000 per status
				var res struct {
					Devboxes []devboxView `json:"devboxes"`
					HasMore  bool         `json:"has_more"`
				}
				if err := p.call(ctx, &request{method: http.MethodGet, path: "/v1/devboxes?" + q.Encode()}, &res); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				all = append(all, res.Devboxes...)
				mu.Unlock()
				if !res.HasMore || len(res.Devboxes) == 0 {
					return
				}
				q.Set("starting_after", res.Devboxes[len(res.Devboxes)-1].ID)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return all, nil
}

// List returns the devboxes this project made (any server) whose labels
// include match.
func (p *Provider) List(ctx context.Context, match map[string]string) ([]providers.Sandbox, error) {
	found, err := p.list(ctx)
	if err != nil {
		return nil, p.typed(ctx, "", "list Runloop devboxes", err)
	}
	seen := map[string]bool{}
	var out []providers.Sandbox
	for _, d := range found {
		if _, ours := d.Metadata[metaServer]; !ours || seen[d.ID] || !includes(d.Metadata, match) {
			continue
		}
		seen[d.ID] = true
		home := ""
		p.mu.Lock()
		if in := p.homes[d.ID]; in != nil {
			home = in.home
		}
		p.mu.Unlock()
		out = append(out, p.sandboxFrom(d, home))
	}
	return out, nil
}

func includes(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// shutdown ends a devbox. Runloop keeps a shut-down devbox's record, and
// answers a second shutdown with a 4xx: that reads as "not found".
func (p *Provider) shutdown(ctx context.Context, id string) error {
	err := p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + id + "/shutdown"}, nil)
	if err == nil {
		return nil
	}
	if s := statusOf(err); s >= 400 && s < 500 && s != http.StatusUnauthorized && s != http.StatusForbidden && s != http.StatusTooManyRequests {
		if _, gerr := p.devbox(ctx, id); gerr != nil {
			return gerr
		}
	}
	return p.typed(ctx, id, "shut down devbox "+id, err)
}

func (p *Provider) Destroy(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	p.forget(id)
	var d devboxView
	err := p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + id + "/shutdown"}, &d)
	if err == nil {
		return nil
	}
	// A 4xx may mean it was already shut down: by someone else (not
	// found), or by an earlier attempt of ours whose answer was lost.
	if _, gerr := p.devbox(ctx, id); gerr != nil {
		if errors.Is(gerr, providers.ErrNotFound) && statusOf(err) >= 500 {
			return nil
		}
		return gerr
	}
	return p.typed(ctx, id, "shut down devbox "+id, err)
}

func (p *Provider) forget(id string) {
	p.dropChannel(id, true)
	p.mu.Lock()
	delete(p.homes, id)
	delete(p.kept, id)
	p.mu.Unlock()
}

var _ providers.Reaper = (*Provider)(nil)

// Reap shuts down this server's devboxes (metadata mcp-sandbox.server, from
// MCP_SANDBOX_SERVER_ID) that providers.Reapable says may go: a dead
// owner's at once, an unknown owner's once past its expiry. It is safe to
// run from several replicas at once.
func (p *Provider) Reap(ctx context.Context, owner func(label string) providers.Liveness) ([]string, error) {
	found, err := p.list(ctx)
	if err != nil {
		return nil, p.typed(ctx, "", "list devboxes to reap", err)
	}
	now := time.Now()
	var removed []string
	var errs []error
	for _, d := range found {
		if d.Metadata[metaServer] != p.o.ServerID || final(d.Status) {
			continue
		}
		expires, err := time.Parse(time.RFC3339Nano, d.Metadata[metaExpires])
		if err != nil {
			expires = time.UnixMilli(d.CreateTimeMs).Add(p.o.Expiry)
		}
		if !providers.Reapable(d.Metadata, !now.Before(expires), owner) {
			continue
		}
		p.forget(d.ID)
		if err := p.shutdown(ctx, d.ID); err != nil && !errors.Is(err, providers.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		p.log.Info("reaped an expired sandbox", "sandbox", d.ID, "session", d.Metadata[providers.LabelSession], "expired", expires)
		removed = append(removed, d.ID)
	}
	return removed, errors.Join(errs...)
}

// touched renews the devbox's keep-alive when it was last renewed more
// than a tenth of the keep-alive ago, in the background: use is activity.
func (p *Provider) touched(id string) {
	p.mu.Lock()
	last, ok := p.kept[id]
	due := !ok || time.Since(last) > p.o.KeepAlive/10
	if due {
		p.kept[id] = time.Now()
	}
	p.mu.Unlock()
	if !due || !ok {
		return // a fresh devbox's keep-alive has just started
	}
	go p.keepAlive(context.Background(), id)
}

func (p *Provider) keepAlive(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, p.o.RequestTimeout)
	defer cancel()
	if err := p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + id + "/keep_alive"}, nil); err != nil {
		p.log.Debug("runloop: keep-alive failed", "devbox", id, "err", err)
	}
}

// keepAliveWhile renews the keep-alive during a long call until the
// returned stop is called.
func (p *Provider) keepAliveWhile(id string) (stop func()) {
	p.touched(id)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(p.o.KeepAlive/3, time.Second))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.mu.Lock()
				p.kept[id] = time.Now()
				p.mu.Unlock()
				p.keepAlive(context.Background(), id)
			}
		}
	}()
	return func() { close(done) }
}

// devboxInfo is what commands in a devbox need to know, asked of the
// devbox once, then cached.
type devboxInfo struct {
	home string // the user's home directory, where commands start
	tmp  string // its TMPDIR, where the helper goes
	// helper is helperReady or helperUnusable; uploaded says this
	// driver put the helper there.
	helper   int32
	uploaded bool
}

// home is the devbox user's home directory, where commands start and
// relative paths resolve.
func (p *Provider) home(ctx context.Context, id string) (string, error) {
	in, err := p.info(ctx, id)
	if err != nil {
		return "", err
	}
	return in.home, nil
}

// info asks the devbox for its home directory and TMPDIR (one shell, no
// other process), once.
func (p *Provider) info(ctx context.Context, id string) (*devboxInfo, error) {
	p.mu.Lock()
	in, ok := p.homes[id]
	p.mu.Unlock()
	if ok {
		return in, nil
	}
	out, err := p.quick(ctx, id, `pwd; printf '%s\n' "${TMPDIR:-/tmp}"`)
	if err != nil {
		return nil, err
	}
	h, t, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(h, "/") {
		return nil, providers.Errorf(providers.ErrUnavailable, "devbox %s reports home directory %q, not an absolute path", id, h)
	}
	if !path.IsAbs(t) || path.Clean(t) != t {
		t = "/tmp"
	}
	in = &devboxInfo{home: h, tmp: t, helper: helperReady}
	p.mu.Lock()
	if have, ok := p.homes[id]; ok {
		in = have
	} else {
		p.homes[id] = in
	}
	p.mu.Unlock()
	return in, nil
}

// quick runs a short housekeeping command (no user data in its output)
// with the API's execute call, which answers with the result of a command
// that ends within its optimistic timeout. A non-zero exit is an error
// carrying stderr.
func (p *Provider) quick(ctx context.Context, id, command string) (string, error) {
	var res execView
	body := map[string]any{"command": command, "command_id": newKey(), "optimistic_timeout": 20}
	if err := p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + id + "/execute?last_n=10000", json: body, hold: 20 * time.Second}, &res); err != nil {
		return "", p.execErr(ctx, id, err)
	}
	if res.Status != "completed" {
		if err := p.longPoll(ctx, "/v1/devboxes/"+id+"/executions/"+res.ExecutionID+"/wait_for_status?last_n=10000", []string{"completed"}, &res); err != nil {
			return "", p.execErr(ctx, id, err)
		}
	}
	if res.ExitStatus == nil || *res.ExitStatus != 0 {
		return res.Stdout, &quickError{Exit: res.exit(), Stderr: strings.TrimSpace(res.Stderr)}
	}
	return res.Stdout, nil
}

type quickError struct {
	Exit   int
	Stderr string
}

func (e *quickError) Error() string { return fmt.Sprintf("exit %d: %s", e.Exit, e.Stderr) }

// execErr explains a failed command call: a devbox that is gone is "not
// found", as is an unknown one.
func (p *Provider) execErr(ctx context.Context, id string, err error) error {
	if s := statusOf(err); s == http.StatusBadRequest || s == http.StatusNotFound {
		if _, gerr := p.devbox(ctx, id); gerr != nil {
			return gerr
		}
	}
	return p.typed(ctx, id, "run a command in devbox "+id, err)
}
