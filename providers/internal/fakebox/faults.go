package fakebox

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Faults are failures a fake injects on demand. The zero value injects none.
type Faults struct {
	mu            sync.Mutex
	failN         int // answer the next failN requests with failStatus
	failStatus    int
	retryAfter    string
	latency       time.Duration
	cutN          int // cut the next cutN streams ...
	cutAfterBytes int // ... after this many bytes
	stuckN        int // the next stuckN sandboxes never finish starting
}

// FailRequests makes the next n requests through Wrap answer status (e.g.
// 503, or 429 with retryAfter seconds in Retry-After) without doing anything.
func (f *Faults) FailRequests(n, status int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failN, f.failStatus, f.retryAfter = n, status, retryAfter
}

// SetLatency delays every request through Wrap by d.
func (f *Faults) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// CutStreams makes the next n streams (output or downloads, as the fake
// decides) drop their connection once afterBytes were sent.
func (f *Faults) CutStreams(n, afterBytes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutN, f.cutAfterBytes = n, afterBytes
}

// TakeStreamCut returns the byte count after which to cut this stream, or
// -1 for none.
func (f *Faults) TakeStreamCut() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cutN <= 0 {
		return -1
	}
	f.cutN--
	return f.cutAfterBytes
}

// StickCreates makes the next n created sandboxes stay in their starting
// state, as a vendor's stuck provisioning does.
func (f *Faults) StickCreates(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stuckN = n
}

// TakeStuck reports whether this create should stick.
func (f *Faults) TakeStuck() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stuckN <= 0 {
		return false
	}
	f.stuckN--
	return true
}

func (f *Faults) take() (status int, retryAfter string, latency time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failN > 0 {
		f.failN--
		status, retryAfter = f.failStatus, f.retryAfter
	}
	return status, retryAfter, f.latency
}

// Wrap applies latency and request failures before next. A failed request
// gets a JSON body {"message": ...}, the shape most vendor APIs use.
func (f *Faults) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, retryAfter, latency := f.take()
		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-r.Context().Done():
				return
			}
		}
		if status != 0 {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]string{"message": "injected fault: " + http.StatusText(status)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Request is the JSON body of a fake's fault-control endpoint, so tests in
// other languages can inject faults into a fake running as its own
// process. Nil fields leave that fault as it is.
type Request struct {
	FailRequests *struct {
		Count      int    `json:"count"`
		Status     int    `json:"status"`
		RetryAfter string `json:"retry_after"`
	} `json:"fail_requests"`
	LatencyMs  *int `json:"latency_ms"`
	CutStreams *struct {
		Count      int `json:"count"`
		AfterBytes int `json:"after_bytes"`
	} `json:"cut_streams"`
	StickCreates *int `json:"stick_creates"`
}

// ControlHandler serves POST with a Request body.
func (f *Faults) ControlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST a fault request", http.StatusMethodNotAllowed)
			return
		}
		var req Request
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
			http.Error(w, "invalid fault request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if req.FailRequests != nil {
			f.FailRequests(req.FailRequests.Count, req.FailRequests.Status, req.FailRequests.RetryAfter)
		}
		if req.LatencyMs != nil {
			f.SetLatency(time.Duration(*req.LatencyMs) * time.Millisecond)
		}
		if req.CutStreams != nil {
			f.CutStreams(req.CutStreams.Count, req.CutStreams.AfterBytes)
		}
		if req.StickCreates != nil {
			f.StickCreates(*req.StickCreates)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
