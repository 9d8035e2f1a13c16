package providers

import (
	"errors"
	"fmt"
	"strings"
)

// Error kinds. Drivers wrap them (Errorf) so callers can test with errors.Is
// and still print a message that says what was wrong.
var (
	ErrNotFound        = errors.New("not found")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrTimeout         = errors.New("timeout")
	// ErrUnavailable is a failure that may pass: a provider that cannot be
	// reached, is overloaded or failed mid-way. Only these say "try again".
	ErrUnavailable = errors.New("provider unavailable")
	// ErrDenied is a refusal that stands until the operator acts: rejected
	// credentials, a missing permission. Never retried.
	ErrDenied      = errors.New("permission denied")
	ErrUnsupported = errors.New("not supported by this provider")
	ErrTooLarge    = errors.New("too large")
)

// Error is a typed error with a human message.
type Error struct {
	Kind error
	Msg  string
	Err  error // optional cause
}

// Error is the message, with the cause appended unless the message already
// carries it (as one built by Errorf with %w does).
func (e *Error) Error() string {
	if e.Err != nil && !strings.Contains(e.Msg, e.Err.Error()) {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Is matches the kind, so errors.Is(err, ErrNotFound) works.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error of the given kind. A %w verb in format records the cause.
func Errorf(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// ValidateEnv rejects environment variables a process cannot carry.
func ValidateEnv(env map[string]string) error {
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return Errorf(ErrInvalidArgument, "environment variable name %q is invalid: names must be non-empty and contain no '=' or NUL", k)
		}
		if strings.ContainsRune(v, 0) {
			return Errorf(ErrInvalidArgument, "environment variable %s contains a NUL byte", k)
		}
	}
	return nil
}
