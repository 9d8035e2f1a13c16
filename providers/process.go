package providers

import (
	"context"
	"io"
	"time"
)

// Processes is the optional interface of drivers that can run commands in
// the background (like database/sql/driver's optional interfaces: having the
// methods is the capability; Backend finds them with a type assertion).
//
// A process outlives the call that started it and the server process that
// started it: its output, stdin and exit status live in the sandbox's
// backend (files beside or inside the sandbox), so any server pointed at the
// same backend can read, feed and stop it by sandbox ID and process ID.
// Destroying the sandbox ends its processes.
//
// Output is kept per stream as a byte sequence addressed by absolute offsets.
// When a stream outgrows ProcessSpec.OutputLimit, the head and the most
// recent tail are kept and the middle is dropped; reads say so.
type Processes interface {
	// StartProcess starts spec.Command with /bin/sh -c and returns once it
	// runs. Cancelling ctx cancels the start, not the process.
	StartProcess(ctx context.Context, id string, spec ProcessSpec) (ProcessInfo, error)
	// WaitProcess returns the process's state once it has exited or timeout
	// has passed, whichever comes first; timeout 0 returns at once.
	// Unknown processes are ErrNotFound.
	WaitProcess(ctx context.Context, id, proc string, timeout time.Duration) (ProcessInfo, error)
	// ListProcesses describes the sandbox's processes, oldest first.
	ListProcesses(ctx context.Context, id string) ([]ProcessInfo, error)
	// ReadOutput reads one stream from an offset.
	ReadOutput(ctx context.Context, id, proc string, req OutputRequest) (Output, error)
	// WriteStdin sends data to the standard input of a process started with
	// OpenStdin; closeStdin then sends end-of-file.
	WriteStdin(ctx context.Context, id, proc string, data []byte, closeStdin bool) error
	// SignalProcess sends a signal ("TERM", "KILL", "INT", "HUP", ...) to
	// the process and everything it started (its process group).
	SignalProcess(ctx context.Context, id, proc, signal string) error
	// RemoveProcess kills the process if it still runs and forgets it and
	// its output.
	RemoveProcess(ctx context.Context, id, proc string) error
}

// ProcessSpec describes a background command.
type ProcessSpec struct {
	// Command is run with `/bin/sh -c`.
	Command string
	// Cwd is relative to the sandbox workdir, or absolute; empty means the workdir.
	Cwd string
	// Env adds to (and overrides) the sandbox's environment.
	Env map[string]string
	// Stdin is written to the process's standard input first.
	Stdin []byte
	// OpenStdin keeps standard input open after Stdin for WriteStdin;
	// otherwise the process reads end-of-file after Stdin.
	OpenStdin bool
	// Timeout, when positive, kills the process group after this long.
	Timeout time.Duration
	// OutputLimit caps the bytes kept per stream (head and tail); zero or
	// less means the driver's default.
	OutputLimit int64
}

// Stream names an output stream.
type Stream string

const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// ProcessInfo describes a process.
type ProcessInfo struct {
	// ID is unique within the sandbox and never reused.
	ID        string
	Command   string
	StartedAt time.Time
	Running   bool
	// ExitCode is valid once Running is false: the exit status, 128+N after
	// signal N, -1 when unknown (the supervisor vanished, e.g. a reboot).
	ExitCode int
	// TimedOut is true when ProcessSpec.Timeout ended the process.
	TimedOut bool
	EndedAt  time.Time
	// StdoutBytes and StderrBytes count everything each stream produced,
	// including bytes dropped from the middle.
	StdoutBytes, StderrBytes int64
	// StdinOpen is true while WriteStdin can deliver data.
	StdinOpen bool
}

// OutputRequest is one read of a stream.
type OutputRequest struct {
	Stream Stream
	// Offset is the absolute byte offset to read from.
	Offset int64
	// Limit caps the bytes returned (at least 1).
	Limit int
	// Wait, when positive and nothing is available at Offset yet, waits up
	// to this long for new output or for the exit.
	Wait time.Duration
}

// Output is what a read returned.
type Output struct {
	Data []byte
	// Offset is where Data starts: past the requested offset when the bytes
	// in between were dropped (Skipped counts them).
	Offset  int64
	Skipped int64
	// Total is the stream's size so far; Data ends at Total when the read
	// caught up.
	Total int64
	// Process is the state after the read.
	Process ProcessInfo
}

// ProcessRunner is optional beside Processes: RunProcess runs a command in
// the foreground like Exec, streaming to req.Stdout and req.Stderr, and
// makes it a background process only when it must: when it still runs at
// req.Wait (it is then detached and keeps running), or when a stream
// produces more than req.KeepAfter bytes (its output is then kept like a
// process's, to page by offset). A quick command with short output thus
// costs what Exec costs and leaves no record. Cancelling ctx before Wait
// kills the command and everything it started.
type ProcessRunner interface {
	RunProcess(ctx context.Context, id string, req RunRequest) (RunResult, error)
}

// RunRequest is a foreground run that may become a process.
type RunRequest struct {
	ProcessSpec
	Wait      time.Duration
	KeepAfter int64
	// Stdout and Stderr receive output until the command ends or detaches.
	Stdout, Stderr io.Writer
}

// RunResult is how a foreground run ended.
type RunResult struct {
	ExecResult
	// ProcessID names the process record when there is one (Running, or
	// output kept past KeepAfter); Processes serves it like any other.
	ProcessID string
	// Running is true when the command outlived Wait and was detached.
	Running bool
}

// ValidProcessID reports whether proc has the form drivers give process IDs:
// a decimal number, so that an ID from a tool call never names a path.
func ValidProcessID(proc string) bool {
	if proc == "" || len(proc) > 18 {
		return false
	}
	for _, c := range proc {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ProcessNotFound is the error for an unknown (or malformed) process ID.
func ProcessNotFound(proc string) error {
	return Errorf(ErrNotFound, "process %q not found", proc)
}
