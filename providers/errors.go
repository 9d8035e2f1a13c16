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
	ErrUnavailable     = errors.New("provider unavailable")
	ErrUnsupported     = errors.New("not supported by this provider")
	ErrTooLarge        = errors.New("too large")
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
