package runloopfake

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// faults are failures injected on demand.
type faults struct {
	createFailures   int // answer the next N creates with createStatus ...
	createStatus     int
	createAfterMake  bool // ... after making the devbox (a lost answer)
	stuck            int  // the next N devboxes never leave provisioning
	requestFailures  int  // answer the next N requests matching requestPath with requestStatus
	requestStatus    int
	requestPath      string
	retryAfter       string
	longPollTimeouts int // answer the next N wait_for_status calls 408 at once
	latency          time.Duration
	streamCuts       int // cut the next N output streams ...
	streamCutAfter   int // ... once this many bytes were sent
	downloadCuts     int // cut the next N downloads ...
	downloadCutAfter int // ... once this many bytes were sent
}

type createFault struct {
	status      int
	afterCreate bool
	stuck       bool
}

type requestFault struct {
	status     int
	retryAfter string
}

// FailCreates makes the next n create requests answer status (e.g. 503)
// without making a devbox.
func (s *Server) FailCreates(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.createFailures, s.faults.createStatus, s.faults.createAfterMake = n, status, false
}

// LoseCreateResponses makes the next n creates make the devbox and then
// answer status, as when a response is lost on the way back.
func (s *Server) LoseCreateResponses(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.createFailures, s.faults.createStatus, s.faults.createAfterMake = n, status, true
}

// StickProvisioning keeps the next n devboxes in "provisioning" for ever.
func (s *Server) StickProvisioning(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.stuck = n
}

// FailRequests makes the next n API requests whose path contains pathPart
// ("" for any) answer status without doing anything; retryAfter, when set,
// is sent as the Retry-After header (seconds).
func (s *Server) FailRequests(n, status int, pathPart, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.requestFailures, s.faults.requestStatus = n, status
	s.faults.requestPath, s.faults.retryAfter = pathPart, retryAfter
}

// TimeOutLongPolls makes the next n wait_for_status calls (devboxes and
// executions) answer 408 at once, as a long poll that ran out does.
func (s *Server) TimeOutLongPolls(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.longPollTimeouts = n
}

// SetLatency delays every API request by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.latency = d
}

// CutStreams makes the next n output streams (stream_*_updates) drop their
// connection once afterBytes of output were sent.
func (s *Server) CutStreams(n, afterBytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.streamCuts, s.faults.streamCutAfter = n, afterBytes
}

// CutDownloads makes the next n download_file answers drop their
// connection once afterBytes of the file were sent.
func (s *Server) CutDownloads(n, afterBytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.downloadCuts, s.faults.downloadCutAfter = n, afterBytes
}

func (s *Server) takeCreateFault() createFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f createFault
	if s.faults.stuck > 0 {
		s.faults.stuck--
		f.stuck = true
	}
	if s.faults.createFailures > 0 {
		s.faults.createFailures--
		f.status, f.afterCreate = s.faults.createStatus, s.faults.createAfterMake
	}
	return f
}

func (s *Server) takeRequestFault(r *http.Request) requestFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.requestFailures <= 0 || !strings.Contains(r.URL.Path, s.faults.requestPath) {
		return requestFault{}
	}
	s.faults.requestFailures--
	return requestFault{s.faults.requestStatus, s.faults.retryAfter}
}

func (s *Server) takeLongPollFault() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.longPollTimeouts <= 0 {
		return false
	}
	s.faults.longPollTimeouts--
	return true
}

// takeStreamCut returns the byte count after which to cut this stream, or -1.
func (s *Server) takeStreamCut() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.streamCuts <= 0 {
		return -1
	}
	s.faults.streamCuts--
	return s.faults.streamCutAfter
}

func (s *Server) takeDownloadCut() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.downloadCuts <= 0 {
		return -1
	}
	s.faults.downloadCuts--
	return s.faults.downloadCutAfter
}

func (s *Server) latency() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.latency
}

// FaultRequest is the body of POST /_fake/faults, so tests in other
// languages can inject faults into a fake running as its own process.
// Absent fields leave that fault unchanged.
type FaultRequest struct {
	FailCreates *struct {
		Count  int  `json:"count"`
		Status int  `json:"status"`
		Lost   bool `json:"lost"` // make the devbox, then fail
	} `json:"failCreates,omitempty"`
	StickProvisioning *int `json:"stickProvisioning,omitempty"`
	FailRequests      *struct {
		Count      int    `json:"count"`
		Status     int    `json:"status"`
		Path       string `json:"path"`
		RetryAfter string `json:"retryAfter"`
	} `json:"failRequests,omitempty"`
	TimeOutLongPolls *int `json:"timeOutLongPolls,omitempty"`
	LatencyMs        *int `json:"latencyMs,omitempty"`
	CutStreams       *struct {
		Count      int `json:"count"`
		AfterBytes int `json:"afterBytes"`
	} `json:"cutStreams,omitempty"`
	CutDownloads *struct {
		Count      int `json:"count"`
		AfterBytes int `json:"afterBytes"`
	} `json:"cutDownloads,omitempty"`
}

// controlHandler serves the fake's own endpoints (no key needed):
//
//	POST /_fake/faults    FaultRequest -> 204
//	GET  /_fake/devboxes  [DevboxInfo]
func (s *Server) controlHandler(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/_fake/faults":
		var req FaultRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			apiError(w, http.StatusBadRequest, "invalid fault request: %v", err)
			return
		}
		if f := req.FailCreates; f != nil {
			if f.Lost {
				s.LoseCreateResponses(f.Count, f.Status)
			} else {
				s.FailCreates(f.Count, f.Status)
			}
		}
		if req.StickProvisioning != nil {
			s.StickProvisioning(*req.StickProvisioning)
		}
		if f := req.FailRequests; f != nil {
			s.FailRequests(f.Count, f.Status, f.Path, f.RetryAfter)
		}
		if req.TimeOutLongPolls != nil {
			s.TimeOutLongPolls(*req.TimeOutLongPolls)
		}
		if req.LatencyMs != nil {
			s.SetLatency(time.Duration(*req.LatencyMs) * time.Millisecond)
		}
		if c := req.CutStreams; c != nil {
			s.CutStreams(c.Count, c.AfterBytes)
		}
		if c := req.CutDownloads; c != nil {
			s.CutDownloads(c.Count, c.AfterBytes)
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/_fake/devboxes":
		writeJSON(w, http.StatusOK, s.Devboxes())
	default:
		apiError(w, http.StatusNotFound, "unknown fake control endpoint %s %s", r.Method, r.URL.Path)
	}
}
