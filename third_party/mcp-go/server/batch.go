package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// JSON-RPC batches (an array of messages in one) were added to MCP in
// protocol version 2025-03-26 and removed again in 2025-06-18. A session that
// negotiated 2025-03-26 may send them, over stdio and streamable HTTP alike;
// any other gets one error that says why, instead of a parse error.

// batchesAllowed reports whether protocol version has JSON-RPC batches.
func batchesAllowed(version string) bool {
	return version == mcp.ProtocolVersion20250326
}

// isBatch reports whether message is a JSON array.
func isBatch(message []byte) bool {
	trimmed := bytes.TrimLeft(message, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '['
}

// sessionProtocolVersion is the version session negotiated, "" when unknown.
func sessionProtocolVersion(session ClientSession) string {
	if versioned, ok := session.(SessionWithProtocolVersion); ok {
		return versioned.ProtocolVersion()
	}
	return ""
}

// errBatchRefused is why a batch was refused as a whole; its message is the
// JSON-RPC error's.
type errBatchRefused struct {
	code    int
	message string
}

func (e *errBatchRefused) Error() string { return e.message }

// handleBatch serves a JSON-RPC batch for the session in ctx: each message
// is handled as if it came alone, all of them at once (the spec lets a
// server answer a batch in any order), and the responses come back as one
// array, in the order of the requests. It returns nil when the batch held
// only notifications (nothing to answer), and an *errBatchRefused when the
// batch as a whole cannot be served.
func (s *MCPServer) handleBatch(ctx context.Context, version string, message []byte) ([]byte, error) {
	var messages []json.RawMessage
	if err := json.Unmarshal(message, &messages); err != nil {
		var syntaxErr *json.SyntaxError
		if errors.As(err, &syntaxErr) {
			return nil, &errBatchRefused{mcp.PARSE_ERROR, "Parse error"}
		}
		return nil, &errBatchRefused{mcp.INVALID_REQUEST, "Invalid request: " + err.Error()}
	}
	if len(messages) == 0 {
		return nil, &errBatchRefused{mcp.INVALID_REQUEST, "Invalid request: an empty JSON-RPC batch"}
	}
	if !batchesAllowed(version) {
		negotiated := version
		if negotiated == "" {
			negotiated = "no version (the session is not initialized)"
		}
		return nil, &errBatchRefused{mcp.INVALID_REQUEST, fmt.Sprintf(
			"JSON-RPC batches are part of MCP protocol version %s only, and this session negotiated %s: send each request as a message of its own",
			mcp.ProtocolVersion20250326, negotiated)}
	}

	responses := make([]mcp.JSONRPCMessage, len(messages))
	var wg sync.WaitGroup
	for i, m := range messages {
		var head struct {
			Method mcp.MCPMethod `json:"method"`
			ID     any           `json:"id"`
		}
		if json.Unmarshal(m, &head) == nil && head.Method == mcp.MethodInitialize {
			// The 2025-03-26 spec: initialize MUST NOT be part of a batch.
			responses[i] = createErrorResponse(head.ID, mcp.INVALID_REQUEST,
				"initialize must not be part of a JSON-RPC batch: send it on its own")
			continue
		}
		wg.Go(func() { responses[i] = s.HandleMessage(ctx, m) })
	}
	wg.Wait()

	var out bytes.Buffer
	for _, r := range responses {
		if r == nil {
			continue // a notification, or a response to a server request
		}
		b, err := mcp.MarshalMessage(r)
		if err != nil {
			return nil, err
		}
		if out.Len() == 0 {
			out.WriteByte('[')
		} else {
			out.WriteByte(',')
		}
		out.Write(bytes.TrimSuffix(b, []byte("\n")))
	}
	if out.Len() == 0 {
		return nil, nil
	}
	out.WriteByte(']')
	return out.Bytes(), nil
}

// serveStdioBatch answers a batch read from stdin.
func (s *StdioServer) serveStdioBatch(ctx context.Context, line []byte, writer io.Writer) {
	answer, err := s.server.handleBatch(ctx, sessionProtocolVersion(&stdioSessionInstance), line)
	var refused *errBatchRefused
	switch {
	case errors.As(err, &refused):
		if err := s.writeResponse(createErrorResponse(nil, refused.code, refused.message), writer); err != nil {
			s.errLogger.Printf("Error writing response: %v", err)
		}
		return
	case err != nil:
		s.errLogger.Printf("Error answering a batch: %v", err)
		return
	case answer == nil:
		return
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := writer.Write(append(answer, '\n')); err != nil {
		s.errLogger.Printf("Error writing response: %v", err)
	}
}

// handleBatchPost answers a batch POSTed by a client using a protocol
// version before 2026-07-28, in the session its Mcp-Session-Id names.
func (s *StreamableHTTPServer) handleBatchPost(w HTTPResponseWriter, r *HTTPRequest) {
	if version := r.header().Get(mcp.HeaderProtocolVersion); mcp.IsModernProtocol(version) {
		s.writeJSONRPCError(w, nil, mcp.INVALID_REQUEST, fmt.Sprintf(
			"JSON-RPC batches are part of MCP protocol version %s only, not %s: send each request as a message of its own",
			mcp.ProtocolVersion20250326, version))
		return
	}
	if rejectUnsupportedProtocolVersion(w, r.header().Get(mcp.HeaderProtocolVersion)) {
		return
	}
	sessionID := r.header().Get(HeaderKeySessionID)
	isTerminated, err := s.resolveSessionIdManager(r).Validate(sessionID)
	if err != nil {
		writeHTTPError(w, "Invalid session ID", http.StatusNotFound)
		return
	}
	if isTerminated {
		writeHTTPError(w, "Session terminated", http.StatusNotFound)
		return
	}
	s.touchSession(sessionID)
	var session *streamableHttpSession
	if v, ok := s.server.sessions.Load(sessionID); ok {
		session, _ = v.(*streamableHttpSession)
	}
	if session == nil {
		// A batch cannot hold initialize, so its session must exist.
		s.writeJSONRPCError(w, nil, mcp.INVALID_REQUEST,
			"JSON-RPC batches need an initialized session: send initialize on its own first")
		return
	}
	ctx := s.server.WithContext(r.ctx(), session)
	ctx = WithSupportedProtocolVersions(ctx, s.supportedProtocolVersions())
	if s.contextFunc != nil {
		ctx = s.contextFunc(ctx, r.asHTTPRequest())
	}
	ctx = context.WithValue(ctx, requestHeader, r.header())

	answer, err := s.server.handleBatch(ctx, sessionProtocolVersion(session), r.Body)
	var refused *errBatchRefused
	switch {
	case errors.As(err, &refused):
		s.writeJSONRPCError(w, nil, refused.code, refused.message)
		return
	case err != nil:
		s.logger.Error("Failed to answer a batch", "err", err)
		writeHTTPError(w, "Internal error", http.StatusInternalServerError)
		return
	case answer == nil:
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(append(answer, '\n')); err != nil {
		s.logger.Error("Failed to write response", "err", err)
	}
}
