package e2b

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/process"
)

// startStream is the client side of envd's server-streaming
// /process.Process/Start, framed by hand (Connect protocol, binary
// protobuf) instead of through connect-go: output chunks are read into one
// buffer reused for the whole stream, so passing on a command's output costs
// no allocation per byte, whatever sync.Pool does. Unary calls still use
// connect-go.
type startStream struct {
	body   io.ReadCloser
	header [5]byte
	buf    []byte
	msg    pb.StartResponse
	err    error
}

// maxMessage bounds one stream message; envd sends output in small chunks.
const maxMessage = 16 << 20

// startProcess posts the request and checks the response's status.
func startProcess(ctx context.Context, c *conn, req *pb.StartRequest) (*startStream, error) {
	payload, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 5+len(payload))
	binary.BigEndian.PutUint32(body[1:5], uint32(len(payload)))
	copy(body[5:], payload)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/process.Process/Start", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/connect+proto")
	hr.Header.Set("Connect-Protocol-Version", "1")
	// As E2B's SDK asks: envd sends a keepalive event after this many idle
	// seconds, so proxies do not cut a quiet command's stream.
	hr.Header.Set("Keepalive-Ping-Interval", "50")
	if dl, ok := ctx.Deadline(); ok {
		// envd kills the command when this passes.
		hr.Header.Set("Connect-Timeout-Ms", strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, httpError(resp)
	}
	return &startStream{body: resp.Body}, nil
}

// httpError reads a Connect error sent with an HTTP status (by envd, or by
// E2B's proxy: 502 for a sandbox that is gone).
func httpError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	json.Unmarshal(data, &e)
	var code connect.Code
	if code.UnmarshalText([]byte(e.Code)) != nil {
		switch resp.StatusCode {
		case 400:
			code = connect.CodeInvalidArgument
		case 401:
			code = connect.CodeUnauthenticated
		case 404:
			code = connect.CodeNotFound
		case 429, 502, 503, 504:
			code = connect.CodeUnavailable
		default:
			code = connect.CodeUnknown
		}
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	return connect.NewWireError(code, errors.New(e.Message))
}

// Receive reads the next message; false at the end of the stream or on an
// error (see Err). The message, and the output it carries, are valid until
// the next call.
func (s *startStream) Receive() bool {
	if s.err != nil {
		return false
	}
	if _, err := io.ReadFull(s.body, s.header[:]); err != nil {
		s.err = connect.NewError(connect.CodeUnavailable, fmt.Errorf("missing end of stream: %w", unexpected(err)))
		return false
	}
	flags, size := s.header[0], binary.BigEndian.Uint32(s.header[1:])
	if size > maxMessage {
		s.err = connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("stream message of %d bytes is over the %d limit", size, maxMessage))
		return false
	}
	if cap(s.buf) < int(size) {
		s.buf = make([]byte, size)
	}
	s.buf = s.buf[:size]
	if _, err := io.ReadFull(s.body, s.buf); err != nil {
		s.err = connect.NewError(connect.CodeUnavailable, fmt.Errorf("stream cut inside a message: %w", unexpected(err)))
		return false
	}
	switch {
	case flags&0x02 != 0: // end of stream: {} or {"error": {...}}
		var end struct {
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(s.buf, &end); err != nil {
			s.err = connect.NewError(connect.CodeInternal, fmt.Errorf("unreadable end of stream: %w", err))
		} else if end.Error != nil {
			var code connect.Code
			if code.UnmarshalText([]byte(end.Error.Code)) != nil {
				code = connect.CodeUnknown
			}
			s.err = connect.NewWireError(code, errors.New(end.Error.Message))
		} else {
			s.err = io.EOF
		}
		return false
	case flags&0x01 != 0:
		s.err = connect.NewError(connect.CodeInternal, errors.New("compressed stream message, though none was asked for"))
		return false
	}
	s.msg.Reset()
	if out, stderr, ok := dataEvent(s.buf); ok {
		d := &pb.ProcessEvent_DataEvent{}
		if stderr {
			d.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: out}
		} else {
			d.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: out}
		}
		s.msg.Event = &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: d}}
		return true
	}
	if err := proto.Unmarshal(s.buf, &s.msg); err != nil {
		s.err = connect.NewError(connect.CodeInternal, fmt.Errorf("unreadable stream message: %w", err))
		return false
	}
	return true
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (s *startStream) Msg() *pb.StartResponse { return &s.msg }

// Err is nil after a clean end of stream.
func (s *startStream) Err() error {
	if s.err == io.EOF {
		return nil
	}
	return s.err
}

func (s *startStream) Close() error { return s.body.Close() }

// dataEvent recognises exactly StartResponse{event: {data: {stdout|stderr: b}}}
// (fields 1, 2 and 1|2) and returns b aliasing data; anything else is left
// to the generic decoder.
func dataEvent(data []byte) (b []byte, stderr, ok bool) {
	for _, want := range []protowire.Number{1, 2} { // StartResponse.event, ProcessEvent.data
		v, ok := onlyField(data, want)
		if !ok {
			return nil, false, false
		}
		data = v
	}
	if v, ok := onlyField(data, 1); ok {
		return v, false, true
	}
	if v, ok := onlyField(data, 2); ok {
		return v, true, true
	}
	return nil, false, false
}

// onlyField returns the value of data's only field when it is the
// length-delimited field num.
func onlyField(data []byte, num protowire.Number) ([]byte, bool) {
	n, typ, l := protowire.ConsumeTag(data)
	if l < 0 || n != num || typ != protowire.BytesType {
		return nil, false
	}
	v, m := protowire.ConsumeBytes(data[l:])
	if m < 0 || l+m != len(data) {
		return nil, false
	}
	return v, true
}
