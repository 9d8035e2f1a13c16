package daytona

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// apiError is a failed API or toolbox call.
type apiError struct {
	Status     int
	Message    string
	Code       string        // the daemon's error code, e.g. FILE_NOT_FOUND
	RetryAfter time.Duration // from Retry-After on a 429
}

func (e *apiError) Error() string {
	return fmt.Sprintf("Daytona answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// retryable says whether an attempt may be repeated: what providers calls
// transient (5xx, 408, 429, timeouts, broken connections), never the
// caller's own cancellation, a refusal or an unreachable API.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || err == nil {
		return false
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return providers.TransientStatus(ae.Status)
	}
	return providers.Transient(err)
}

// pause waits before attempt n+1 (n is 1-based): the server's Retry-After
// when it gave one, else exponential backoff with jitter. It returns false
// when the wait would run past the retry budget or ctx ends.
func (p *Provider) pause(ctx context.Context, began time.Time, n int, err error) bool {
	d := p.o.RetryBase << (n - 1)
	d = d/2 + rand.N(d/2+1)
	var ae *apiError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		d = ae.RetryAfter
	}
	if time.Since(began)+d > p.o.RetryBudget {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// errorBody reads the error answers of the API ({statusCode, error,
// message}, message possibly a list) and of the daemon ({message, code}).
func errorBody(status int, data []byte, h http.Header) *apiError {
	var e struct {
		Message json.RawMessage `json:"message"`
		Error   string          `json:"error"`
		Code    string          `json:"code"`
		Errors  []string        `json:"errors"`
	}
	ae := &apiError{Status: status}
	if json.Unmarshal(data, &e) == nil {
		var s string
		var list []string
		switch {
		case json.Unmarshal(e.Message, &s) == nil && s != "":
			ae.Message = s
		case json.Unmarshal(e.Message, &list) == nil && len(list) > 0:
			ae.Message = strings.Join(list, "; ")
		case len(e.Errors) > 0:
			ae.Message = strings.Join(e.Errors, "; ")
		default:
			ae.Message = e.Error
		}
		ae.Code = e.Code
	}
	if ae.Message == "" {
		ae.Message = strings.TrimSpace(string(data))
	}
	if status == http.StatusTooManyRequests {
		if secs, err := strconv.Atoi(h.Get("Retry-After")); err == nil && secs >= 0 {
			ae.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(h.Get("Retry-After")); err == nil {
			ae.RetryAfter = max(time.Until(t), 0)
		}
	}
	return ae
}

// do makes one request with the API key; out, when non-nil, receives the
// JSON answer of a 2xx.
func (p *Provider) do(ctx context.Context, method, url string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, p.o.RequestTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	p.auth(req)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return errorBody(resp.StatusCode, data, resp.Header)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("Daytona sent an unreadable answer to %s %s: %w", method, req.URL.Path, err)
		}
	}
	return nil
}

func (p *Provider) auth(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+p.o.APIKey)
	req.Header.Set("User-Agent", "mcp-sandbox")
	req.Header.Set("X-Daytona-Source", "mcp-sandbox")
}

// idempotent repeats do on retryable failures. attempts tells how many
// requests were made, so a caller can read a 404 after a failed DELETE as
// success.
func (p *Provider) idempotent(ctx context.Context, method, url string, in, out any) (attempts int, err error) {
	began := time.Now()
	for attempts = 1; ; attempts++ {
		err = p.do(ctx, method, url, in, out)
		if !retryable(ctx, err) || attempts > p.o.Retries {
			return attempts, err
		}
		p.log.Debug("daytona: retrying", "method", method, "url", url, "attempt", attempts, "err", err)
		if !p.pause(ctx, began, attempts, err) {
			return attempts, err
		}
	}
}

// api calls the REST API at path (relative to DAYTONA_API_URL).
func (p *Provider) api(ctx context.Context, method, path string, in, out any) (int, error) {
	return p.idempotent(ctx, method, p.apiURL+path, in, out)
}

// typed turns an API failure into a providers error that says what to do.
// Only failures that may pass say so; refusals never do.
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
			return providers.Errorf(providers.ErrDenied, "%s: Daytona refused the credentials (%d: %s); check %s", what, ae.Status, ae.Message, EnvAPIKey)
		case ae.Status == http.StatusRequestTimeout || ae.Status == http.StatusGatewayTimeout:
			return providers.Errorf(providers.ErrTimeout, "%s: Daytona timed out (%d: %s); try again, or with a longer timeout", what, ae.Status, ae.Message)
		case ae.Status == http.StatusTooManyRequests:
			wait := ""
			if ae.RetryAfter > 0 {
				wait = fmt.Sprintf(" after %v", ae.RetryAfter)
			}
			return providers.Errorf(providers.ErrUnavailable, "%s: Daytona's rate limit or quota was reached (%s); retry%s, or delete unused sandboxes", what, ae.Message, wait)
		case providers.TransientStatus(ae.Status):
			return providers.Errorf(providers.ErrUnavailable, "%s: Daytona failed (%d: %s), also on retrying; try again later", what, ae.Status, ae.Message)
		}
		return providers.Errorf(providers.ErrInvalidArgument, "%s: Daytona refused it (%d: %s)", what, ae.Status, ae.Message)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return providers.Errorf(providers.ErrTimeout, "%s: Daytona did not answer within %v, also on retrying; try again later", what, p.o.RequestTimeout)
	}
	if !providers.Transient(err) {
		return providers.Errorf(providers.ErrUnavailable, "%s: cannot reach Daytona at %s (check %s and the network): %w", what, p.apiURL, EnvAPIURL, err)
	}
	return providers.Errorf(providers.ErrUnavailable, "%s: the connection to Daytona at %s failed, also on retrying: %w; try again later", what, p.apiURL, err)
}

func isStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == status
}
