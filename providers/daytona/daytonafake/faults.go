package daytonafake

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Kinds of faults armed on the fake's fakebox.Faults.
const (
	cutDownload = "download"
	cutLog      = "log"
)

// FailCreates makes the next n create requests answer status (e.g. 503).
func (s *Server) FailCreates(n, status int) { s.faults.FailCreates(n, status, false) }

// LoseCreateResponses makes the next n create requests create the sandbox
// and then answer status, as when a response is lost on the way back: a
// careful client must find and delete what it could not see.
func (s *Server) LoseCreateResponses(n, status int) { s.faults.FailCreates(n, status, true) }

// StickCreating makes the next n sandboxes created stay in state
// "creating" until deleted.
func (s *Server) StickCreating(n int) { s.faults.StickCreates(n) }

// FailRequests makes the next n API requests (under /api, of any kind)
// answer status without doing anything; with a 429, retryAfter (seconds)
// is sent as Retry-After when positive.
func (s *Server) FailRequests(n, status, retryAfter int) {
	ra := ""
	if retryAfter > 0 {
		ra = strconv.Itoa(retryAfter)
	}
	s.faults.FailRequests(n, status, "", ra)
}

// SetLatency delays every request (API and toolbox) by d.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// CutDownloads makes the next n file downloads drop their connection once
// afterBytes of the file were sent.
func (s *Server) CutDownloads(n, afterBytes int) { s.faults.Arm(cutDownload, n, afterBytes) }

// CutLogStreams makes the next n followed command-log streams drop their
// connection once afterBytes of log were sent. The command keeps running,
// as it would in a real sandbox.
func (s *Server) CutLogStreams(n, afterBytes int) { s.faults.Arm(cutLog, n, afterBytes) }

// FaultRequest is the body of POST /_fake/faults, so tests in other
// languages can inject faults into a fake running as its own process.
// Absent fields leave that fault unchanged.
type FaultRequest struct {
	FailCreates *struct {
		Count  int  `json:"count"`
		Status int  `json:"status"`
		Lost   bool `json:"lost"` // create the sandbox, then fail
	} `json:"failCreates,omitempty"`
	StickCreating *int `json:"stickCreating,omitempty"`
	FailRequests  *struct {
		Count      int `json:"count"`
		Status     int `json:"status"`
		RetryAfter int `json:"retryAfter"`
	} `json:"failRequests,omitempty"`
	LatencyMs    *int `json:"latencyMs,omitempty"`
	CutDownloads *struct {
		Count      int `json:"count"`
		AfterBytes int `json:"afterBytes"`
	} `json:"cutDownloads,omitempty"`
	CutLogStreams *struct {
		Count      int `json:"count"`
		AfterBytes int `json:"afterBytes"`
	} `json:"cutLogStreams,omitempty"`
}

// controlHandler serves the fake's own endpoints (no key needed):
//
//	POST /_fake/faults     FaultRequest -> 204
//	GET  /_fake/sandboxes  [SandboxInfo]
func (s *Server) controlHandler(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/_fake/faults":
		var req FaultRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			apiError(w, r, http.StatusBadRequest, "invalid fault request: %v", err)
			return
		}
		if f := req.FailCreates; f != nil {
			if f.Lost {
				s.LoseCreateResponses(f.Count, f.Status)
			} else {
				s.FailCreates(f.Count, f.Status)
			}
		}
		if req.StickCreating != nil {
			s.StickCreating(*req.StickCreating)
		}
		if f := req.FailRequests; f != nil {
			s.FailRequests(f.Count, f.Status, f.RetryAfter)
		}
		if req.LatencyMs != nil {
			s.SetLatency(time.Duration(*req.LatencyMs) * time.Millisecond)
		}
		if c := req.CutDownloads; c != nil {
			s.CutDownloads(c.Count, c.AfterBytes)
		}
		if c := req.CutLogStreams; c != nil {
			s.CutLogStreams(c.Count, c.AfterBytes)
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/_fake/sandboxes":
		writeJSON(w, http.StatusOK, s.Sandboxes())
	default:
		apiError(w, r, http.StatusNotFound, "unknown fake control endpoint %s %s", r.Method, r.URL.Path)
	}
}
