package tools

import (
	"slices"
	"sync"
	"time"
)

// maxAbandoned bounds the finished results of abandoned calls kept in all
// (each holds at most two capped streams); the oldest go first.
const maxAbandoned = 64

// flights tracks run_command calls whose command is still in the
// foreground (not yet a process), so process_list can show them, and keeps
// the results of calls whose client went away before the command ended.
type flights struct {
	mu        sync.Mutex
	running   map[*flight]struct{}
	abandoned []abandonedRun // oldest first
}

// flight is one run_command call in the foreground.
type flight struct {
	sid, sandboxID, command string
	started                 time.Time
	stdout, stderr          *capture
}

// abandonedRun is the result of a call nobody waited for.
type abandonedRun struct {
	sid    string
	result AbandonedRun
}

func (fs *flights) start(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.running == nil {
		fs.running = map[*flight]struct{}{}
	}
	fs.running[f] = struct{}{}
}

func (fs *flights) end(f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.running, f)
}

func (fs *flights) keep(sid string, r AbandonedRun) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.abandoned) >= maxAbandoned {
		fs.abandoned = append(fs.abandoned[:0], fs.abandoned[1:]...)
	}
	fs.abandoned = append(fs.abandoned, abandonedRun{sid: sid, result: r})
}

// list returns the session's calls in the foreground, oldest first, and
// the results of its abandoned calls, restricted to sandboxes in keep.
func (fs *flights) list(sid string, keep func(sandboxID string) bool) ([]ForegroundRun, []AbandonedRun) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	running := []ForegroundRun{}
	for f := range fs.running {
		if f.sid == sid && keep(f.sandboxID) {
			running = append(running, ForegroundRun{SandboxID: f.sandboxID, Command: f.command, StartedAt: f.started,
				StdoutBytes: f.stdout.written(), StderrBytes: f.stderr.written()})
		}
	}
	slices.SortFunc(running, func(a, b ForegroundRun) int { return a.StartedAt.Compare(b.StartedAt) })
	abandoned := []AbandonedRun{}
	for _, a := range fs.abandoned {
		if a.sid == sid && keep(a.result.SandboxID) {
			abandoned = append(abandoned, a.result)
		}
	}
	return running, abandoned
}

// ForegroundRun is a run_command call whose command still runs in the
// foreground: it has no process_id until it outlives its wait.
type ForegroundRun struct {
	SandboxID   string    `json:"sandbox_id"`
	Command     string    `json:"command"`
	StartedAt   time.Time `json:"started_at"`
	StdoutBytes int64     `json:"stdout_bytes" jsonschema_description:"Bytes written to stdout so far."`
	StderrBytes int64     `json:"stderr_bytes" jsonschema_description:"Bytes written to stderr so far."`
}

// AbandonedRun is the result of a run_command call that was cancelled or
// whose client went away, and whose command then ended before its wait did.
type AbandonedRun struct {
	Command string `json:"command"`
	RunCommandResult
	timeout time.Duration
}
