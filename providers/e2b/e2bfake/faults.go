package e2bfake

import (
	"encoding/json"
	"net/http"
	"time"
)

// Kinds of faults armed on the fake's fakebox.Faults.
const (
	cutStream = "stream"
	cutUpload = "upload"
)

// FailCreates makes the next n create requests answer status (e.g. 503).
func (s *Server) FailCreates(n, status int) { s.faults.FailCreates(n, status, false) }

// LoseCreateResponses makes the next n create requests create the sandbox
// and then answer status, as when a response is lost on the way back: a
// careful client must find and kill what it could not see.
func (s *Server) LoseCreateResponses(n, status int) { s.faults.FailCreates(n, status, true) }

// FailRequests makes the next n control-plane requests, of any kind,
// answer status (e.g. 502) without doing anything.
func (s *Server) FailRequests(n, status int) { s.faults.FailRequests(n, status, "", "") }

// SetLatency delays every request (both planes) by d.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// CutStreams makes the next n command output streams (process Start) drop
// their connection once afterBytes of output were sent, without an end
// event. The command itself keeps running, as it would in a real sandbox.
func (s *Server) CutStreams(n, afterBytes int) { s.faults.Arm(cutStream, n, afterBytes) }

// CutUploads makes the next n file uploads drop their connection once
// afterBytes of the request body were read, as when a client or the
// network gives up half way; what was read stays written, as with envd.
func (s *Server) CutUploads(n, afterBytes int) { s.faults.Arm(cutUpload, n, afterBytes) }

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
