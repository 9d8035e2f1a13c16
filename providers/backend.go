package providers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// Backend is one configured driver as the rest of the server sees it: the
// portable type in front of a driver, as gocloud's blob.Bucket stands in
// front of driver.Bucket. It checks arguments once (so drivers need not),
// chooses fallbacks (Run), discovers optional behaviour by the methods a
// driver has, and names the provider in errors.
type Backend struct {
	d      Provider
	procs  Processes     // nil: no background processes
	runner ProcessRunner // nil: Run falls back to StartProcess or Exec
}

// NewBackend wraps a driver.
func NewBackend(d Provider) *Backend {
	b := &Backend{d: d}
	b.procs, _ = d.(Processes)
	b.runner, _ = d.(ProcessRunner)
	if b.procs == nil {
		b.runner = nil // a run that outlives its wait needs a process to become
	}
	return b
}

// Name is the registry name of the driver.
func (b *Backend) Name() string { return b.d.Name() }

// Capabilities are the driver's declared behaviours that have no method.
func (b *Backend) Capabilities() Capabilities { return b.d.Capabilities() }

// HasProcesses reports whether the driver runs background processes.
func (b *Backend) HasProcesses() bool { return b.procs != nil }

// As is the escape hatch to the driver's own type: when target is a
// pointer to a type the driver has (its concrete type, or an interface it
// implements), As sets it and returns true.
func (b *Backend) As(target any) bool {
	switch t := target.(type) {
	case *Provider:
		*t = b.d
		return true
	case *Processes:
		*t = b.procs
		return b.procs != nil
	case *Reaper:
		r, ok := b.d.(Reaper)
		*t = r
		return ok
	}
	if a, ok := b.d.(interface{ As(any) bool }); ok {
		return a.As(target)
	}
	return false
}

// Close releases the driver's connections.
func (b *Backend) Close() error { return b.d.Close() }

// err names the provider in a driver's error, keeping its kind.
func (b *Backend) err(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	prefix := b.Name() + ": "
	var pe *Error
	if errors.As(err, &pe) {
		if strings.HasPrefix(pe.Msg, b.Name()) {
			return err
		}
		return &Error{Kind: pe.Kind, Msg: prefix + pe.Msg, Err: pe.Err}
	}
	if strings.HasPrefix(err.Error(), b.Name()) {
		return err
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// checkID: an ID no driver could have issued reads as not found, never as
// a malformed request, so that probing IDs learns nothing.
func checkID(id string) error {
	if id == "" || len(id) > 256 || strings.ContainsAny(id, "\x00/\\") {
		return Errorf(ErrNotFound, "sandbox %q not found", id)
	}
	return nil
}

func checkText(what, s string) error {
	if strings.ContainsRune(s, 0) {
		return Errorf(ErrInvalidArgument, "%s contains a NUL byte, which no command or path can carry; remove it", what)
	}
	return nil
}

func checkPath(path string) error {
	if path == "" {
		return Errorf(ErrInvalidArgument, "path is empty; pass a file path, relative to the sandbox workdir or absolute")
	}
	return checkText("path", path)
}

// Create starts a sandbox.
func (b *Backend) Create(ctx context.Context, opts CreateOptions) (Sandbox, error) {
	if err := ValidateEnv(opts.Env); err != nil {
		return Sandbox{}, err
	}
	for k, v := range opts.Labels {
		if k == "" || strings.ContainsRune(k+v, 0) {
			return Sandbox{}, Errorf(ErrInvalidArgument, "label %q is invalid: names must be non-empty and neither may contain NUL", k)
		}
	}
	if err := checkText("image", opts.Image); err != nil {
		return Sandbox{}, err
	}
	sb, err := b.d.Create(ctx, opts)
	return b.described(sb), b.err(err)
}

// Get describes a sandbox.
func (b *Backend) Get(ctx context.Context, id string) (Sandbox, error) {
	if err := checkID(id); err != nil {
		return Sandbox{}, err
	}
	sb, err := b.d.Get(ctx, id)
	return b.described(sb), b.err(err)
}

// List returns the sandboxes whose labels include every label in match.
func (b *Backend) List(ctx context.Context, match map[string]string) ([]Sandbox, error) {
	sbs, err := b.d.List(ctx, match)
	for i := range sbs {
		sbs[i] = b.described(sbs[i])
	}
	return sbs, b.err(err)
}

// Isolation says what confines the driver's sandboxes, when it can tell.
func (b *Backend) Isolation() (Isolation, bool) {
	d, ok := b.d.(Describer)
	if !ok {
		return Isolation{}, false
	}
	return d.Isolation(), true
}

// described fills in a sandbox's isolation from its driver's, when the
// driver did not say it for the sandbox itself.
func (b *Backend) described(sb Sandbox) Sandbox {
	if sb.ID == "" || sb.Isolation != nil {
		return sb
	}
	if iso, ok := b.Isolation(); ok {
		sb.Isolation = &iso
	}
	return sb
}

// Destroy removes a sandbox and ends its processes.
func (b *Backend) Destroy(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return b.err(b.d.Destroy(ctx, id))
}

// Release is what becomes of a sandbox whose session ended: the driver's
// choice when it is a Releaser (a hosted sandbox may be stopped, to be found
// again by its labels), else Destroy. It reports which it did.
func (b *Backend) Release(ctx context.Context, id string) (destroyed bool, err error) {
	if err := checkID(id); err != nil {
		return false, err
	}
	if r, ok := b.d.(Releaser); ok {
		return false, b.err(r.Release(ctx, id))
	}
	return true, b.err(b.d.Destroy(ctx, id))
}

// Exec runs a command in the foreground (see Provider.Exec).
func (b *Backend) Exec(ctx context.Context, id string, req ExecRequest) (ExecResult, error) {
	if err := b.checkRun(id, req.Command, req.Cwd, req.Env); err != nil {
		return ExecResult{}, err
	}
	if req.Stdin != nil && !b.Capabilities().Has(CapStdin) {
		return ExecResult{}, Errorf(ErrUnsupported, "the %s provider cannot pass stdin; write the input to a file and redirect it (cmd < file)", b.Name())
	}
	res, err := b.d.Exec(ctx, id, req)
	return res, b.err(err)
}

func (b *Backend) checkRun(id, command, cwd string, env map[string]string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if strings.TrimSpace(command) == "" {
		return Errorf(ErrInvalidArgument, "command is empty; pass a shell command such as \"ls -la\"")
	}
	if err := checkText("command", command); err != nil {
		return err
	}
	if err := checkText("cwd", cwd); err != nil {
		return err
	}
	return ValidateEnv(env)
}

// ReadFile opens a regular file for reading.
func (b *Backend) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, FileInfo, error) {
	if err := checkID(id); err != nil {
		return nil, FileInfo{}, err
	}
	if err := checkPath(path); err != nil {
		return nil, FileInfo{}, err
	}
	rc, fi, err := b.d.ReadFile(ctx, id, path)
	return rc, fi, b.err(err)
}

// WriteFile replaces a file atomically, creating missing parents.
func (b *Backend) WriteFile(ctx context.Context, id, path string, data []byte, mode fs.FileMode) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := checkPath(path); err != nil {
		return err
	}
	return b.err(b.d.WriteFile(ctx, id, path, data, mode))
}

// Stat describes a path without following a final symlink.
func (b *Backend) Stat(ctx context.Context, id, path string) (FileInfo, error) {
	if err := checkID(id); err != nil {
		return FileInfo{}, err
	}
	if err := checkPath(path); err != nil {
		return FileInfo{}, err
	}
	fi, err := b.d.Stat(ctx, id, path)
	return fi, b.err(err)
}

// ListFiles walks a directory ("" is the workdir) down to depth levels
// (0 or 1: its own entries), returning at most limit entries (0: all).
func (b *Backend) ListFiles(ctx context.Context, id, path string, depth, limit int) ([]FileInfo, bool, error) {
	if err := checkID(id); err != nil {
		return nil, false, err
	}
	if path == "" {
		path = "."
	}
	if err := checkText("path", path); err != nil {
		return nil, false, err
	}
	if limit < 0 {
		return nil, false, Errorf(ErrInvalidArgument, "limit must not be negative, got %d", limit)
	}
	depth = max(depth, 1) // 0 means the directory's own entries
	entries, truncated, err := b.d.ListFiles(ctx, id, path, depth, limit)
	return entries, truncated, b.err(err)
}

// Reap removes the sandboxes this server left behind (see Reaper); drivers
// whose sandboxes cannot outlive the server have nothing to reap.
func (b *Backend) Reap(ctx context.Context, owner func(label string) Liveness) ([]string, error) {
	r, ok := b.d.(Reaper)
	if !ok {
		return nil, nil
	}
	removed, err := r.Reap(ctx, owner)
	return removed, b.err(err)
}

// Wrap makes every driver in the map a Backend.
func Wrap(drivers map[string]Provider) map[string]*Backend {
	out := make(map[string]*Backend, len(drivers))
	for name, d := range drivers {
		out[name] = NewBackend(d)
	}
	return out
}

// deadlineAfter is now + d, or the zero time for d <= 0.
func deadlineAfter(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}
