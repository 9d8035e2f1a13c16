package providers

import (
	"errors"
	"io/fs"
	"testing"
)

func TestErrorf(t *testing.T) {
	cause := errors.New("connection refused")
	tests := []struct {
		name string
		err  error
		kind error
		want string
	}{
		{"plain", Errorf(ErrNotFound, "sandbox %q not found", "x"), ErrNotFound, `sandbox "x" not found`},
		{"cause said once", Errorf(ErrUnavailable, "list sandboxes: %w", cause), ErrUnavailable, "list sandboxes: connection refused"},
		{"built by hand", &Error{Kind: ErrTimeout, Msg: "run", Err: cause}, ErrTimeout, "run: connection refused"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%s: Error() = %q, want %q", tc.name, got, tc.want)
		}
		if !errors.Is(tc.err, tc.kind) {
			t.Errorf("%s: not of kind %v", tc.name, tc.kind)
		}
	}
	if err := Errorf(ErrNotFound, "read: %w", fs.ErrNotExist); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cause is lost: %v", err)
	}
}
