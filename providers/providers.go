// Package providers is the portable sandbox API: Backend, the type the rest
// of the server uses, in front of small drivers (Provider) that live in
// sub-packages and register by name. See doc.go for how to write a driver.
package providers

import (
	"context"
	"io"
	"io/fs"
	"time"
)

// Provider is what a sandbox backend implements.
type Provider interface {
	// Name is the registry name ("local", "docker", ...).
	Name() string
	// Capabilities says which optional behaviours the driver supports.
	Capabilities() Capabilities

	// Create starts a new sandbox. On error nothing is left running.
	Create(ctx context.Context, opts CreateOptions) (Sandbox, error)
	// Get describes an existing sandbox, or returns ErrNotFound.
	Get(ctx context.Context, id string) (Sandbox, error)
	// List returns the sandboxes this backend holds whose labels include every
	// label in match (nil matches all).
	List(ctx context.Context, match map[string]string) ([]Sandbox, error)
	// Destroy removes a sandbox and ends its processes. Destroying an unknown
	// (or already destroyed) sandbox returns ErrNotFound.
	Destroy(ctx context.Context, id string) error

	// Exec runs a shell command in the sandbox, streaming its output to
	// req.Stdout and req.Stderr as it comes. A non-zero exit status is not an
	// error. When req.Timeout passes or ctx is cancelled, everything the
	// command started is killed.
	Exec(ctx context.Context, id string, req ExecRequest) (ExecResult, error)

	// ReadFile opens a regular file for reading.
	ReadFile(ctx context.Context, id, path string) (io.ReadCloser, FileInfo, error)
	// WriteFile writes a file atomically, creating missing parent directories.
	WriteFile(ctx context.Context, id, path string, data []byte, mode fs.FileMode) error
	// Stat describes a path without following a final symlink.
	Stat(ctx context.Context, id, path string) (FileInfo, error)
	// ListFiles walks a directory down to depth levels (1 = direct children)
	// and returns at most limit entries (0: all), in lexical path order; truncated
	// reports whether entries were left out.
	ListFiles(ctx context.Context, id, path string, depth, limit int) (entries []FileInfo, truncated bool, err error)

	// Close releases connections held by the driver (not the sandboxes).
	Close() error
}

// CreateOptions describe a new sandbox.
type CreateOptions struct {
	// Name is a human label; it need not be unique.
	Name string
	// Image is the backend-specific template (a Docker image, an E2B
	// template...). Empty means the driver's configured default.
	Image string
	// Env is set for every command run in the sandbox.
	Env map[string]string
	// Labels are stored with the sandbox and returned by List and Get.
	Labels map[string]string
}

// Sandbox describes a sandbox.
type Sandbox struct {
	ID       string `json:"sandbox_id"`
	Provider string `json:"provider"`
	Name     string `json:"name,omitempty"`
	Image    string `json:"image,omitempty"`
	Workdir  string `json:"workdir"`
	// DiskLimit says how much the sandbox may write and where, when the
	// driver bounds it (empty: no bound of the driver's).
	DiskLimit string            `json:"disk_limit,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Labels    map[string]string `json:"-"`
	// Isolation says what confines the sandbox, for the model and the
	// operator; nil when the driver cannot tell.
	Isolation *Isolation `json:"isolation,omitempty"`
}

// Describer is a driver that can say what confines its sandboxes, for the
// server's instructions and for sandboxes that do not say it themselves.
type Describer interface {
	Isolation() Isolation
}

// Isolation is what confines one sandbox, in words a model can act on.
type Isolation struct {
	// Level: "container", "microvm", "namespaces", "landlock" or "none".
	Level string `json:"level"`
	// Network: what the sandbox's commands can reach, e.g. "none",
	// "loopback only", "host", or a network's name.
	Network string `json:"network"`
	// Limits: which limits hold and how.
	Limits string `json:"limits,omitempty"`
}

// ExecRequest is one command to run.
type ExecRequest struct {
	// Command is run with `/bin/sh -c`.
	Command string
	// Cwd is relative to the sandbox workdir, or absolute; empty means the workdir.
	Cwd string
	// Env adds to (and overrides) the sandbox's environment.
	Env map[string]string
	// Stdin, when non-nil, is copied to the command's standard input.
	Stdin io.Reader
	// Timeout, when positive, bounds the run; the process tree is killed then.
	Timeout time.Duration
	// Stdout and Stderr receive output as it is produced. Nil discards.
	Stdout, Stderr io.Writer
}

// ExecResult is how a command ended.
type ExecResult struct {
	ExitCode int
	// TimedOut is true when Timeout ended the command (ExitCode is then -1
	// unless the backend reports a signal status).
	TimedOut bool
	Duration time.Duration
	// OutputCut is true when children the command left running still held
	// its output open when the call returned: what they write after that
	// is not in the output. All the command itself wrote always is.
	OutputCut bool
}

// FileType is the kind of a file-system entry.
type FileType string

const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeOther   FileType = "other"
)

// FileInfo describes one entry. Path is relative to the directory listed
// (ListFiles) or as given (Stat, ReadFile).
type FileInfo struct {
	Path    string      `json:"path"`
	Type    FileType    `json:"type"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"-"`
	ModTime time.Time   `json:"mtime"`
}

// Capability is an optional behaviour a driver may lack.
type Capability string

const (
	// CapStdin: ExecRequest.Stdin is delivered to the command.
	CapStdin Capability = "stdin"
	// CapKillTree: timeout and cancellation kill background children too.
	CapKillTree Capability = "kill-tree"
	// CapProcessIsolation: commands cannot see or signal host processes.
	CapProcessIsolation Capability = "process-isolation"
	// CapNetworkIsolation: commands have no network unless configured.
	CapNetworkIsolation Capability = "network-isolation"
)

// Capabilities is the set a driver supports.
type Capabilities []Capability

// Has reports whether c is in the set.
func (cs Capabilities) Has(c Capability) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// LabelSession is the label key under which the session manager records the
// owner of a sandbox: its MCP session and the server process that holds it
// (CreateOptions.Labels). Drivers that reap orphans (Reaper) ask whether
// that owner is still alive.
const LabelSession = "session"

// LabelKeep, set to "true", marks a sandbox meant to outlive its session
// (--keep-sandboxes): a reaper removes it only once it has expired.
const LabelKeep = "keep"

// Liveness is what a server can tell of a sandbox's owner.
type Liveness int

const (
	// OwnerUnknown: the owner may be alive (a server on another machine, a
	// label this server cannot read); only the expiry may reclaim it.
	OwnerUnknown Liveness = iota
	// OwnerLive: the owning session is live; its sandbox is left alone.
	OwnerLive
	// OwnerDead: the owning session ended or its server is gone.
	OwnerDead
)

// Reaper is implemented by drivers whose sandboxes can outlive the server
// that created them (a container keeps running after a crash). Reap removes
// the sandboxes this server's ID labels that Reapable says may go, and
// returns their IDs. owner tells the liveness of a LabelSession value. The
// server calls it at start-up and then on a timer.
type Reaper interface {
	Reap(ctx context.Context, owner func(label string) Liveness) (removed []string, err error)
}

// Reapable decides for one sandbox, from its labels and whether it is past
// its expiry: a dead owner's sandbox goes at once, a live one's stays, and
// one whose owner cannot be known, or that is kept on purpose, goes only
// once expired. owner may be nil (nothing is known).
func Reapable(labels map[string]string, expired bool, owner func(label string) Liveness) bool {
	if labels[LabelKeep] == "true" || labels[LabelSession] == "" || owner == nil {
		return expired
	}
	switch owner(labels[LabelSession]) {
	case OwnerLive:
		return false
	case OwnerDead:
		return true
	}
	return expired
}

// Releaser is implemented by drivers that decide what becomes of a sandbox
// whose session ended (a hosted sandbox may be stopped, to be found again by
// its labels, rather than deleted). The session manager calls Release
// instead of Destroy when a session ends.
type Releaser interface {
	Release(ctx context.Context, id string) error
}
