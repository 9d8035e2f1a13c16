package runloop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// apiError is a failed API call.
type apiError struct {
	Status  int
	Message string
	// ShouldRetry is the API's own verdict (x-should-retry), when given.
	ShouldRetry *bool
	// RetryAfter is the delay the API asked for (429, 503).
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	return fmt.Sprintf("Runloop API answered %d: %s", e.Status, e.Message)
}

func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// request is one API call. Bodies are bytes so that a retry resends them.
type request struct {
	method, path string
	json         any    // marshalled as the body when non-nil
	body         []byte // a raw body, with contentType
	contentType  string
	accept       string
	// stream leaves the answer's body open for the caller and bounds the
	// call by ctx alone (downloads, event streams).
	stream bool
	// hold is how long the server may hold the request (long polls).
	hold time.Duration
	// key is the idempotency key, the same on every attempt.
	key string
	// once is never repeated: the API might do it twice (a channel's
	// stdin, which the API does not deduplicate).
	once bool
}

// do makes one attempt. A 2xx answer comes back with its body open; any
// other status is an *apiError.
func (p *Provider) do(ctx context.Context, r *request) (*http.Response, context.CancelFunc, error) {
	cancel := context.CancelFunc(func() {})
	if !r.stream {
		ctx, cancel = context.WithTimeout(ctx, p.o.RequestTimeout+r.hold)
	}
	body, ctype := r.body, r.contentType
	if r.json != nil {
		b, err := json.Marshal(r.json)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		body, ctype = b, "application/json"
	} else if r.method == http.MethodPost && body == nil {
		body, ctype = []byte("{}"), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, r.method, p.base+r.path, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.o.APIKey)
	req.Header.Set("User-Agent", "mcp-sandbox")
	req.Header.Set("Accept", "application/json")
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if r.key != "" {
		req.Header.Set("X-Request-Id", r.key)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, cancel, nil
	}
	defer cancel()
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ae := &apiError{Status: resp.StatusCode}
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) == nil && e.Message != "" {
		ae.Message = e.Message
	} else {
		ae.Message = strings.TrimSpace(string(data))
	}
	if ae.Message == "" {
		ae.Message = http.StatusText(resp.StatusCode)
	}
	switch strings.ToLower(resp.Header.Get("X-Should-Retry")) {
	case "true":
		ae.ShouldRetry = new(true)
	case "false":
		ae.ShouldRetry = new(false)
	}
	ae.RetryAfter = retryAfter(resp.Header)
	return nil, nil, ae
}

// retryAfter reads retry-after-ms, then Retry-After (seconds or a date).
func retryAfter(h http.Header) time.Duration {
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms >= 0 {
		return time.Duration(ms * float64(time.Millisecond))
	}
	v := h.Get("Retry-After")
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// retryDelay says whether a failed attempt may be repeated, and after how
// long: 408, 409, 429 and 5xx answers and broken connections are, unless
// the API says otherwise with x-should-retry; a permanent answer (400,
// 401, 403, 404, 422...) and the caller's own cancellation never are.
func (p *Provider) retryDelay(ctx context.Context, err error, attempt int) (time.Duration, bool) {
	if ctx.Err() != nil || attempt > p.o.Retries {
		return 0, false
	}
	var ae *apiError
	if errors.As(err, &ae) {
		// Runloop answers 409 to a call on a devbox still changing state.
		retry := ae.Status == http.StatusConflict || providers.TransientStatus(ae.Status)
		if ae.ShouldRetry != nil {
			retry = *ae.ShouldRetry
		}
		if !retry {
			return 0, false
		}
		if ae.RetryAfter > 0 {
			return ae.RetryAfter, ae.RetryAfter <= p.o.MaxRetryAfter
		}
	} else if errors.Is(err, context.DeadlineExceeded) {
		return 0, false // this request's own timeout: the API is too slow, not gone
	} else if !providers.Transient(err) {
		return 0, false // unreachable or misconfigured: repeating cannot help
	}
	d := p.o.RetryBase << (attempt - 1)
	return d/2 + mrand.N(d/2+1), true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// open makes the request, retrying what may be retried, and returns the
// answer with its body open. Every non-GET request carries an idempotency
// key, the same on each attempt, so a retried create or command is not
// done twice.
func (p *Provider) open(ctx context.Context, r *request) (*http.Response, context.CancelFunc, error) {
	if r.method != http.MethodGet && r.key == "" {
		r.key = newKey()
	}
	for attempt := 1; ; attempt++ {
		resp, cancel, err := p.do(ctx, r)
		if err == nil {
			return resp, cancel, nil
		}
		if r.once {
			return nil, nil, err
		}
		delay, ok := p.retryDelay(ctx, err, attempt)
		if !ok {
			return nil, nil, err
		}
		p.log.Debug("runloop: retrying", "method", r.method, "path", r.path, "attempt", attempt, "in", delay, "err", err)
		if !sleep(ctx, delay) {
			return nil, nil, err
		}
	}
}

// call makes the request and decodes a JSON answer into out (when non-nil).
func (p *Provider) call(ctx context.Context, r *request, out any) error {
	resp, cancel, err := p.open(ctx, r)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("the Runloop API sent an unreadable answer to %s %s: %w", r.method, r.path, err)
		}
	}
	return nil
}

// longPoll repeats a wait_for_status call until it answers: 408 means the
// hold ran out and the question stands. It gives up when ctx ends.
func (p *Provider) longPoll(ctx context.Context, path string, statuses []string, out any) error {
	for {
		hold := p.o.LongPoll
		if dl, ok := ctx.Deadline(); ok {
			hold = min(hold, time.Until(dl))
		}
		if hold <= 0 {
			return context.DeadlineExceeded
		}
		body := map[string]any{"statuses": statuses, "timeout_seconds": max(int(hold/time.Second), 1)}
		err := p.call(ctx, &request{method: http.MethodPost, path: path, json: body, hold: hold}, out)
		if statusOf(err) != http.StatusRequestTimeout {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func newKey() string {
	if u, err := uuid.NewV7(); err == nil {
		return u.String()
	}
	return rand.Text()
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
			return providers.Errorf(providers.ErrDenied, "%s: Runloop rejected the API key (%s); check %s", what, ae.Message, EnvAPIKey)
		case ae.Status == http.StatusTooManyRequests:
			wait := ""
			if ae.RetryAfter > 0 {
				wait = fmt.Sprintf(" for %v", ae.RetryAfter.Round(time.Second))
			}
			return providers.Errorf(providers.ErrUnavailable, "%s: Runloop's rate limit or devbox quota was reached (%s); it asks to wait%s, or shut unused devboxes down", what, ae.Message, wait)
		case ae.Status == http.StatusRequestTimeout:
			return providers.Errorf(providers.ErrTimeout, "%s: Runloop timed the request out (%s); try again", what, ae.Message)
		case ae.Status >= 500:
			return providers.Errorf(providers.ErrUnavailable, "%s: Runloop failed even after %d retries (%s); try again later", what, p.o.Retries, ae.Message)
		}
		return providers.Errorf(providers.ErrInvalidArgument, "%s: %s", what, ae.Message)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return providers.Errorf(providers.ErrTimeout, "%s: the Runloop API did not answer within %v; try again later", what, p.o.RequestTimeout)
	}
	if !providers.Transient(err) {
		return providers.Errorf(providers.ErrUnavailable, "%s: cannot reach the Runloop API at %s (check %s and the network): %w", what, p.base, EnvBaseURL, err)
	}
	return providers.Errorf(providers.ErrUnavailable, "%s: the connection to the Runloop API at %s failed, also on retrying: %w; try again later", what, p.base, err)
}
