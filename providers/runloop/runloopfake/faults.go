package runloopfake

import (
	"encoding/json"
	"net/http"
	"time"
)

// Kinds of faults armed on the fake's fakebox.Faults.
const (
	cutStream   = "stream"
	cutDownload = "download"
	longPoll    = "long-poll"
	slowUpload  = "slow-upload"
)

// FailCreates makes the next n create requests answer status (e.g. 503)
// without making a devbox.
func (s *Server) FailCreates(n, status int) { s.faults.FailCreates(n, status, false) }

// LoseCreateResponses makes the next n creates make the devbox and then
// answer status, as when a response is lost on the way back.
func (s *Server) LoseCreateResponses(n, status int) { s.faults.FailCreates(n, status, true) }

// StickProvisioning keeps the next n devboxes in "provisioning" for ever.
func (s *Server) StickProvisioning(n int) { s.faults.StickCreates(n) }

// FailRequests makes the next n API requests whose path contains pathPart
// ("" for any) answer status without doing anything; retryAfter, when set,
// is sent as the Retry-After header (seconds).
func (s *Server) FailRequests(n, status int, pathPart, retryAfter string) {
	s.faults.FailRequests(n, status, pathPart, retryAfter)
}

// TimeOutLongPolls makes the next n wait_for_status calls (devboxes and
// executions) answer 408 at once, as a long poll that ran out does.
func (s *Server) TimeOutLongPolls(n int) { s.faults.Arm(longPoll, n, 0) }

// SetLatency delays every API request by d.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// CutStreams makes the next n output streams (stream_*_updates) drop their
// connection once afterBytes of output were sent.
func (s *Server) CutStreams(n, afterBytes int) { s.faults.Arm(cutStream, n, afterBytes) }

// CutDownloads makes the next n download_file answers drop their
// connection once afterBytes of the file were sent.
func (s *Server) CutDownloads(n, afterBytes int) { s.faults.Arm(cutDownload, n, afterBytes) }

// SlowUploads makes the next n upload_file calls take d after the whole
// file arrived before it lands and they answer, as a busy devbox may: the
// file lands even when the client stopped waiting.
func (s *Server) SlowUploads(n int, d time.Duration) {
	s.faults.Arm(slowUpload, n, int(d/time.Millisecond))
}

func (s *Server) takeLongPollFault() bool {
	_, ok := s.faults.Take(longPoll)
	return ok
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
	SlowUploads *struct {
		Count   int `json:"count"`
		DelayMs int `json:"delayMs"`
	} `json:"slowUploads,omitempty"`
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
		if c := req.SlowUploads; c != nil {
			s.SlowUploads(c.Count, time.Duration(c.DelayMs)*time.Millisecond)
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/_fake/devboxes":
		writeJSON(w, http.StatusOK, s.Devboxes())
	default:
		apiError(w, http.StatusNotFound, "unknown fake control endpoint %s %s", r.Method, r.URL.Path)
	}
}
