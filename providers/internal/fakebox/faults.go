package fakebox

import (
	"strings"
	"sync"
	"time"
)

// Faults are failures a fake injects on demand, each for the next n times
// it applies. The zero value injects none. A vendor fake keeps one, arms
// it from its own methods and fault endpoint (whose JSON is the vendor
// fake's), and takes from it where each fault applies, answering in the
// vendor's wire shape.
type Faults struct {
	mu           sync.Mutex
	creates      int // fail the next creates with createStatus ...
	createStatus int
	createLost   bool // ... after making the sandbox (a lost answer)
	stuck        int  // the next sandboxes made never finish starting
	requests     int  // fail the next requests whose path holds requestPath
	reqStatus    int
	requestPath  string
	retryAfter   string
	latency      time.Duration
	armed        map[string]*armed // other faults, by kind
}

type armed struct{ n, value int }

// FailCreates makes the next n creates answer status (e.g. 503); with
// lost, each first makes its sandbox, as when an answer is lost on the way
// back: a careful client must find and delete what it could not see.
func (f *Faults) FailCreates(n, status int, lost bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates, f.createStatus, f.createLost = n, status, lost
}

// StickCreates makes the next n sandboxes made stay in their starting
// state, as a vendor's stuck provisioning does.
func (f *Faults) StickCreates(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stuck = n
}

// TakeCreate says how this create goes: status is the failure to answer
// (0: none), lost that the sandbox is made first, stuck that it never
// starts. Only a create that makes its sandbox uses up a stuck one.
func (f *Faults) TakeCreate() (status int, lost, stuck bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.creates > 0 {
		f.creates--
		status, lost = f.createStatus, f.createLost
	}
	if f.stuck > 0 && (status == 0 || lost) {
		f.stuck--
		stuck = true
	}
	return status, lost, stuck
}

// FailRequests makes the next n requests whose path contains pathPart
// (any, when empty) answer status without doing anything, with
// retryAfter, when not empty, as Retry-After.
func (f *Faults) FailRequests(n, status int, pathPart, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests, f.reqStatus, f.requestPath, f.retryAfter = n, status, pathPart, retryAfter
}

// TakeRequest returns the failure for a request to path: its status (0:
// none) and Retry-After.
func (f *Faults) TakeRequest(path string) (status int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.requests <= 0 || !strings.Contains(path, f.requestPath) {
		return 0, ""
	}
	f.requests--
	return f.reqStatus, f.retryAfter
}

// SetLatency delays every request by d.
func (f *Faults) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// Latency is the delay SetLatency set.
func (f *Faults) Latency() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latency
}

// Arm makes the next n Takes of kind (a fault the fake names: a stream
// cut after value bytes, a long poll that times out...) return value.
func (f *Faults) Arm(kind string, n, value int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armed == nil {
		f.armed = map[string]*armed{}
	}
	f.armed[kind] = &armed{n, value}
}

// Take reports whether a fault of kind applies this time, and its value.
func (f *Faults) Take(kind string) (value int, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.armed[kind]
	if a == nil || a.n <= 0 {
		return 0, false
	}
	a.n--
	return a.value, true
}

// TakeCut is Take for a cut: the byte count after which to cut this
// stream, or -1 for none.
func (f *Faults) TakeCut(kind string) int {
	if v, ok := f.Take(kind); ok {
		return v
	}
	return -1
}
