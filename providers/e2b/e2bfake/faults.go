package e2bfake

import (
	"encoding/json"
	"net/http"
	"time"
)

// faults are failures injected on demand.
type faults struct {
	createFailures  int  // answer the next N creates with createStatus
	createStatus    int  //
	createAfterMake bool // ... after creating the sandbox (a lost answer)
	apiFailures     int  // answer the next N API requests (any) with apiStatus
	apiStatus       int
	latency         time.Duration
	streamCuts      int // cut the next N command streams ...
	streamCutAfter  int // ... once this many output bytes were sent
	uploadCuts      int // drop the next N uploads (POST /files) ...
	uploadCutAfter  int // ... once this many body bytes were read
}

type createFault struct {
	status      int
	afterCreate bool
}

// FailCreates makes the next n create requests answer status (e.g. 503).
func (s *Server) FailCreates(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.createFailures, s.faults.createStatus, s.faults.createAfterMake = n, status, false
}

// LoseCreateResponses makes the next n create requests create the sandbox
// and then answer status, as when a response is lost on the way back: a
// careful client must find and kill what it could not see.
func (s *Server) LoseCreateResponses(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.createFailures, s.faults.createStatus, s.faults.createAfterMake = n, status, true
}

// FailRequests makes the next n control-plane requests, of any kind,
// answer status (e.g. 502) without doing anything.
func (s *Server) FailRequests(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.apiFailures, s.faults.apiStatus = n, status
}

func (s *Server) takeAPIFault() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.apiFailures <= 0 {
		return 0
	}
	s.faults.apiFailures--
	return s.faults.apiStatus
}

// SetLatency delays every request (both planes) by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.latency = d
}

// CutStreams makes the next n command output streams (process Start) drop
// their connection once afterBytes of output were sent, without an end
// event. The command itself keeps running, as it would in a real sandbox.
func (s *Server) CutStreams(n, afterBytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.streamCuts, s.faults.streamCutAfter = n, afterBytes
}

// CutUploads makes the next n file uploads drop their connection once
// afterBytes of the request body were read, as when a client or the
// network gives up half way; what was read stays written, as with envd.
func (s *Server) CutUploads(n, afterBytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.uploadCuts, s.faults.uploadCutAfter = n, afterBytes
}

// takeUploadCut returns the body byte count after which to cut this
// upload, or -1.
func (s *Server) takeUploadCut() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.uploadCuts <= 0 {
		return -1
	}
	s.faults.uploadCuts--
	return s.faults.uploadCutAfter
}

func (s *Server) takeCreateFault() createFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.createFailures <= 0 {
		return createFault{}
	}
	s.faults.createFailures--
	return createFault{status: s.faults.createStatus, afterCreate: s.faults.createAfterMake}
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

func (s *Server) latency() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.latency
}

// FaultRequest is the body of POST /_fake/faults, so tests in other
// languages can inject faults into a fake running as its own process.
// Zero fields leave that fault unchanged.
type FaultRequest struct {
	FailCreates *struct {
		Count  int  `json:"count"`
		Status int  `json:"status"`
		Lost   bool `json:"lost"` // create the sandbox, then fail
	} `json:"failCreates,omitempty"`
	FailRequests *struct {
		Count  int `json:"count"`
		Status int `json:"status"`
	} `json:"failRequests,omitempty"`
	LatencyMs  *int `json:"latencyMs,omitempty"`
	CutStreams *struct {
		Count      int `json:"count"`
		AfterBytes int `json:"afterBytes"`
	} `json:"cutStreams,omitempty"`
}

// controlHandler serves the fake's own endpoints:
//
//	POST /_fake/faults     FaultRequest -> 204
//	GET  /_fake/sandboxes  [SandboxInfo]
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
		if f := req.FailRequests; f != nil {
			s.FailRequests(f.Count, f.Status)
		}
		if req.LatencyMs != nil {
			s.SetLatency(time.Duration(*req.LatencyMs) * time.Millisecond)
		}
		if c := req.CutStreams; c != nil {
			s.CutStreams(c.Count, c.AfterBytes)
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/_fake/sandboxes":
		writeJSON(w, http.StatusOK, s.Sandboxes())
	default:
		apiError(w, http.StatusNotFound, "unknown fake control endpoint %s %s", r.Method, r.URL.Path)
	}
}
