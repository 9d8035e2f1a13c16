package mcp

import (
	"encoding/json"
	"strings"
	"testing"
)

// A tool result written by hand is what json.Marshal writes; raw structured
// content is written as it is once checked, and compacted if it must be.
func TestMarshalMessageWritesToolResultsAsEncodingJSON(t *testing.T) {
	text := NewTextContent("line <1>\n\t\"two\" & \u2028 \xff")
	tests := []*CallToolResult{
		{},
		{Content: []Content{text}},
		{Content: []Content{&text, NewImageContent("AAAA", "image/png"), TextContent{Type: "text", Text: "a", Meta: &Meta{AdditionalFields: map[string]any{"k": "v"}}}}},
		{Content: []Content{text}, IsError: true, StructuredContent: map[string]any{"a": []int{1, 2}, "b": "<x>"}},
		{Result: Result{Meta: &Meta{AdditionalFields: map[string]any{"m": 1}}, ResultType: ResultTypeComplete}, MultiRoundTripResult: MultiRoundTripResult{RequestState: "s"},
			Content: []Content{NewTextContent(strings.Repeat("x", 5000))}},
	}
	for i, r := range tests {
		msg := NewJSONRPCResultResponse(NewRequestId(int64(i)), r)
		want, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MarshalMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want)+"\n" {
			t.Errorf("result %d:\n got  %.400s\n want %.400s", i, got, want)
		}
	}
	for _, tt := range []struct{ raw, want string }{
		{`{"a":"<b>","n":1}`, `{"a":"<b>","n":1}`},
		{"{\n  \"a\": [1, 2]\n}", `{"a":[1,2]}`},
	} {
		got, err := MarshalMessage(NewJSONRPCResultResponse(NewRequestId(1), &CallToolResult{RawStructuredContent: json.RawMessage(tt.raw)}))
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":` + tt.want + "}}\n"; string(got) != want {
			t.Errorf("raw %q:\n got  %s\n want %s", tt.raw, got, want)
		}
	}
	if _, err := MarshalMessage(NewJSONRPCResultResponse(NewRequestId(1), &CallToolResult{RawStructuredContent: json.RawMessage(`{"a":`)})); err == nil {
		t.Error("invalid raw structured content was written")
	}
	for _, tt := range []struct {
		sc   appender
		want string
	}{
		{`{"a":"<b>"}`, `{"a":"<b>"}`},
		{"{ \"a\" :\n1 }", `{"a":1}`},
		{`{"a":`, ""},
	} {
		got, err := MarshalMessage(NewJSONRPCResultResponse(NewRequestId(1), &CallToolResult{StructuredContent: tt.sc}))
		want := `{"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":` + tt.want + "}}\n"
		if tt.want == "" && err == nil || tt.want != "" && string(got) != want {
			t.Errorf("appender %q:\n got  %s (%v)\n want %s", tt.sc, got, err, want)
		}
	}
}

// appender is structured content that writes itself as its text.
type appender string

func (a appender) AppendJSON(b []byte) []byte { return append(b, a...) }
func (a appender) JSONSizeHint() int          { return len(a) }
