package mcp

import (
	"encoding/json"
)

// MarshalMessage encodes a JSON-RPC message for the wire, followed by a
// newline, as a json.Encoder does. A tool call's result is written by hand
// into one buffer sized for it: through json.Marshal, the result's text
// would be escaped into a buffer grown by doubling, and its raw structured
// content scanned again to be compacted, then both copied twice more; for a
// file read that is the whole file each time.
func MarshalMessage(message any) ([]byte, error) {
	response, ok := message.(JSONRPCResponse)
	var result *CallToolResult
	if ok {
		switch r := response.Result.(type) {
		case *CallToolResult:
			result = r
		case CallToolResult:
			result = &r
		}
	}
	if result == nil {
		b, err := json.Marshal(message)
		return append(b, '\n'), err
	}
	version, err := json.Marshal(response.JSONRPC)
	if err != nil {
		return nil, err
	}
	id, err := json.Marshal(response.ID)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 64+len(version)+len(id)+result.wireSizeHint())
	b = append(b, `{"jsonrpc":`...)
	b = append(b, version...)
	b = append(b, `,"id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	if b, err = result.appendWire(b); err != nil {
		return nil, err
	}
	return append(b, "}\n"...), nil
}

// JSONAppender is structured content that encodes itself: a large result
// is then encoded once, straight into the message.
type JSONAppender interface {
	// AppendJSON appends json.Marshal's encoding of the value to b.
	AppendJSON(b []byte) []byte
	// JSONSizeHint is about the size of that encoding.
	JSONSizeHint() int
}

// wireSizeHint is about the size of the result's encoding: its texts and
// structured content, a little more for escapes.
func (r *CallToolResult) wireSizeHint() int {
	n := 256 + len(r.RawStructuredContent)
	if sc, ok := r.StructuredContent.(JSONAppender); ok {
		n += sc.JSONSizeHint()
	}
	for _, c := range r.Content {
		switch c := c.(type) {
		case TextContent:
			n += len(c.Text) + len(c.Text)/16 + 64
		case *TextContent:
			if c != nil {
				n += len(c.Text) + len(c.Text)/16 + 64
			}
		case ImageContent:
			n += len(c.Data) + 64
		}
	}
	return n
}

// appendWire appends what json.Marshal(r.wireFields()) returns: the
// members in key order, as encoding/json writes a map.
func (r *CallToolResult) appendWire(b []byte) ([]byte, error) {
	member := func(b []byte, key string, v any) ([]byte, error) {
		enc, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, '"'), key...), '"', ':')
		return append(b, enc...), nil
	}
	var err error
	b = append(b, '{')
	if r.Meta != nil {
		if b, err = member(b, "_meta", r.Meta); err != nil {
			return nil, err
		}
		b = append(b, ',')
	}
	b = append(b, `"content":[`...)
	for i, c := range r.Content {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendContent(b, c); err != nil {
			return nil, err
		}
	}
	b = append(b, ']')
	if len(r.InputRequests) > 0 {
		if b, err = member(append(b, ','), "inputRequests", r.InputRequests); err != nil {
			return nil, err
		}
	}
	if r.IsError {
		b = append(b, `,"isError":true`...)
	}
	if r.RequestState != "" {
		if b, err = member(append(b, ','), "requestState", r.RequestState); err != nil {
			return nil, err
		}
	}
	if r.ResultType != "" {
		if b, err = member(append(b, ','), "resultType", r.ResultType); err != nil {
			return nil, err
		}
	}
	switch sc, appends := r.StructuredContent.(JSONAppender); {
	case len(r.RawStructuredContent) == 0 && appends:
		// Written straight into b, then checked as raw content is.
		start := len(b) + len(`,"structuredContent":`)
		b = sc.AppendJSON(append(b, `,"structuredContent":`...))
		if _, compact := ValidJSON(b[start:]); !compact {
			raw, err := json.Marshal(json.RawMessage(b[start:]))
			if err != nil {
				return nil, err
			}
			b = append(b[:start], raw...)
		}
	case len(r.RawStructuredContent) > 0:
		// Written as it is once checked; json.Marshal compacts it (a stdio
		// message is one line) and words the error for invalid JSON.
		raw := r.RawStructuredContent
		if _, compact := ValidJSON(raw); !compact {
			if raw, err = json.Marshal(json.RawMessage(raw)); err != nil {
				return nil, err
			}
		}
		b = append(append(b, `,"structuredContent":`...), raw...)
	case r.StructuredContent != nil:
		if b, err = member(append(b, ','), "structuredContent", r.StructuredContent); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendContent appends c's encoding. Text, most of a large result, is
// escaped straight into b; other content goes through json.Marshal.
func appendContent(b []byte, c Content) ([]byte, error) {
	t, ok := c.(TextContent)
	if p, isPtr := c.(*TextContent); isPtr && p != nil {
		t, ok = *p, true
	}
	if !ok || t.Annotations != nil || t.Meta != nil {
		enc, err := json.Marshal(c)
		return append(b, enc...), err
	}
	b = append(b, `{"type":`...)
	b = AppendJSONString(b, t.Type)
	b = append(b, `,"text":`...)
	b = AppendJSONString(b, t.Text)
	return append(b, '}'), nil
}
