package modalfake

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// faults are failures injected on demand.
type faults struct {
	sync.Mutex
	failures   int // answer the next N control-plane calls with failCode
	failCode   codes.Code
	throttles  int // throttle the next N control-plane calls ...
	retryAfter time.Duration
	latency    time.Duration
	createHang bool // SandboxCreateV2 makes the sandbox, then answers only when the caller gives up
	streamCuts int  // cut the next N stdio streams ...
	cutAfter   int  // ... once this many bytes were sent
}

// FailCalls makes the next n control-plane calls (any method but
// AuthTokenGet) fail with code, e.g. codes.Unavailable, doing nothing.
func (s *Server) FailCalls(n int, code codes.Code) {
	s.faults.Lock()
	defer s.faults.Unlock()
	s.faults.failures, s.faults.failCode = n, code
}

// Throttle makes the next n control-plane calls fail with
// RESOURCE_EXHAUSTED carrying Modal's retry policy (retry after d).
func (s *Server) Throttle(n int, d time.Duration) {
	s.faults.Lock()
	defer s.faults.Unlock()
	s.faults.throttles, s.faults.retryAfter = n, d
}

// SetLatency delays every call (both services) by d.
func (s *Server) SetLatency(d time.Duration) {
	s.faults.Lock()
	defer s.faults.Unlock()
	s.faults.latency = d
}

// HangCreates makes SandboxCreateV2 create the sandbox and then never
// answer (until the caller gives up), as a stuck scheduler does: a careful
// client must find and terminate what it could not see.
func (s *Server) HangCreates(on bool) {
	s.faults.Lock()
	defer s.faults.Unlock()
	s.faults.createHang = on
}

// CutStreams makes the next n TaskExecStdioRead streams fail with
// UNAVAILABLE once afterBytes were sent. The command keeps running.
func (s *Server) CutStreams(n, afterBytes int) {
	s.faults.Lock()
	defer s.faults.Unlock()
	s.faults.streamCuts, s.faults.cutAfter = n, afterBytes
}

// RotateRouterTokens replaces every sandbox's router token: the ones
// handed out so far are refused (UNAUTHENTICATED) from now on.
func (s *Server) RotateRouterTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sb := range s.sandboxes {
		sb.routerJWT = newJWT(s.opts.RouterTokenTTL)
	}
}

// ExpireSandbox ends a sandbox as its timeout would.
func (s *Server) ExpireSandbox(id string) bool {
	sb, err := s.lookup(id)
	if err != nil {
		return false
	}
	sb.finish(pb.GenericResult_GENERIC_STATUS_TIMEOUT, "Sandbox timed out")
	return true
}

func (s *Server) takeFault(ctx context.Context, full string) error {
	s.faults.Lock()
	lat := s.faults.latency
	var err error
	control := strings.HasPrefix(full, "/modal.client.") && !strings.HasSuffix(full, "/AuthTokenGet")
	switch {
	case control && s.faults.failures > 0:
		s.faults.failures--
		err = status.Error(s.faults.failCode, "injected failure")
	case control && s.faults.throttles > 0:
		s.faults.throttles--
		st := status.New(codes.ResourceExhausted, "rate limit exceeded")
		st, _ = st.WithDetails(&pb.RPCRetryPolicy{RetryAfterSecs: float32(s.faults.retryAfter.Seconds())})
		err = st.Err()
	}
	s.faults.Unlock()
	if lat > 0 {
		select {
		case <-time.After(lat):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return err
}

func (s *Server) createFault(ctx context.Context) error {
	s.faults.Lock()
	hang := s.faults.createHang
	s.faults.Unlock()
	if !hang {
		return nil
	}
	<-ctx.Done()
	return status.FromContextError(ctx.Err()).Err()
}

// takeStreamCut returns the byte count after which to cut this stream, or -1.
func (s *Server) takeStreamCut() int {
	s.faults.Lock()
	defer s.faults.Unlock()
	if s.faults.streamCuts <= 0 {
		return -1
	}
	s.faults.streamCuts--
	return s.faults.cutAfter
}
