package providers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// What a hosted driver may retry. The drivers' own loops (backoff, budget,
// idempotency keys, Retry-After) stay theirs; which failures are worth a
// second attempt is decided here, once, so that every driver fails fast on
// what repeating cannot fix.

// Unreachable reports whether a request failed before it reached the
// provider: the host name does not resolve, nothing listens at the address,
// or there is no route to it. Nothing was delivered, so nothing was made on
// the provider's side, and repeating the request within seconds meets the
// same wall (a resolver that timed out times out again, at its own pace):
// such a failure is reported at once, not retried.
func Unreachable(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// Transient reports whether a request that failed without an answer (a
// transport error: err is not an HTTP status) may succeed if repeated soon:
// a connection dropped mid-way or a request that took too long. It is false
// for the caller's own cancellation, for an unreachable provider, and for a
// misconfigured one (TLS certificate or protocol mismatch, malformed URL),
// which no repetition can fix.
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), Unreachable(err):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true // this attempt's own timeout (a caller's is checked by its ctx)
	}
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	if errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &record) {
		return false
	}
	// http.Client's own refusals of a URL it cannot use.
	msg := err.Error()
	for _, s := range []string{"unsupported protocol scheme", "no Host in request URL", "server gave HTTP response to HTTPS client"} {
		if strings.Contains(msg, s) {
			return false
		}
	}
	return true // reset, EOF, broken pipe, and what is not known to be permanent
}

// TransientStatus reports whether an HTTP status may pass if the request
// is repeated: 408 Request Timeout, 429 Too Many Requests and the 5xx of a
// server in trouble. 501 and 505 say what the server will never do;
// 4xx refusals (401, 403, 404, 422...) stand until the request changes.
func TransientStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported, http.StatusNetworkAuthenticationRequired:
		return false
	}
	return status >= 500 && status <= 599
}
