package tools_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// callRaw sends a tools/call whose arguments are the given JSON text, as a
// client's bytes reach the server, and returns the tool result.
func callRaw(t *testing.T, s *server.MCPServer, d *direct, name, args string) *mcp.CallToolResult {
	t.Helper()
	d.id++
	msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, d.id, name, args)
	resp, ok := s.HandleMessage(d.ctx, []byte(msg)).(mcp.JSONRPCResponse)
	if !ok {
		t.Fatalf("%s %s: not a result", name, args)
	}
	return resp.Result.(*mcp.CallToolResult)
}

// Every numeric argument of every tool is range-checked before it becomes a
// Go value, and the error names the valid range.
func TestNumericArgumentsAreRangeChecked(t *testing.T) {
	s := newServer(t, tools.DefaultLimits, nil)
	d := newDirect(t, s)
	if res := callRaw(t, s, d, "write_file", `{"path":"f.txt","content":"one\ntwo\n"}`); res.IsError {
		t.Fatal(text(res))
	}
	started := callRaw(t, s, d, "process_start", `{"command":"echo hi"}`)
	if started.IsError {
		t.Fatal(text(started))
	}
	proc := started.StructuredContent.(tools.ProcessInfo).ProcessID
	callRaw(t, s, d, "process_output", fmt.Sprintf(`{"process_id":%q,"wait_seconds":5}`, proc))

	const (
		secs   = `must be from 0 to`
		number = `must be a number, not a JSON string`
	)
	line := func(name string) string { return `"` + name + `" must be an integer from 1 to 2147483647` }
	// The values every argument is tried at; want[i] is the error for
	// values[i] ("" when the call must succeed). An offset past the end is in
	// range, and the error says what is wrong with it.
	values := []string{`0`, `-1`, `2147483648`, `9007199254740993`, `1e10`, `1e300`, `"NaN"`, `null`}
	tests := []struct {
		tool, base, arg string
		want            []string
	}{
		{"run_command", `"command":"true"`, "timeout_seconds", []string{"", secs, secs, secs, secs, secs, number, ""}},
		{"run_command", `"command":"true"`, "wait_seconds", []string{"", secs, secs, secs, secs, secs, number, ""}},
		{"process_start", `"command":"true"`, "timeout_seconds", []string{"", secs, secs, secs, secs, secs, number, ""}},
		{"process_output", `"process_id":"` + proc + `"`, "wait_seconds", []string{"", secs, secs, secs, secs, secs, number, ""}},
		{"process_output", `"process_id":"` + proc + `"`, "byte_offset", []string{"", `"byte_offset" must be an integer from 0 to 9007199254740991, got -1`, "past the end",
			`got 9007199254740993`, `must be an integer in plain digits`, `from 0 to 9007199254740991, got 1e300`, `got a JSON string`, ""}},
		{"process_output", `"process_id":"` + proc + `"`, "limit", []string{"", line("limit"), line("limit") + `, got 2147483648`,
			`got 9007199254740993`, line("limit"), line("limit"), line("limit"), ""}},
		{"read_file", `"path":"f.txt"`, "start_line", []string{"", line("start_line"), line("start_line"), `got 9007199254740993`, line("start_line"), line("start_line"), line("start_line"), ""}},
		{"read_file", `"path":"f.txt"`, "limit", []string{"", line("limit"), line("limit"), line("limit"), line("limit"), line("limit"), line("limit"), ""}},
		{"list_files", `"path":"."`, "depth", []string{"", `"depth" must be an integer from 1 to 10, got -1`, `from 1 to 10`, `from 1 to 10`, `from 1 to 10`, `from 1 to 10`, `from 1 to 10`, ""}},
	}
	for _, tt := range tests {
		for i, v := range values {
			args := fmt.Sprintf(`{%s,%q:%s}`, tt.base, tt.arg, v)
			res := callRaw(t, s, d, tt.tool, args)
			switch want := tt.want[i]; {
			case want == "" && res.IsError:
				t.Errorf("%s %s: unexpected error %q", tt.tool, args, text(res))
			case want != "" && (!res.IsError || !strings.Contains(text(res), want)):
				t.Errorf("%s %s: want an error containing %q, got isError=%v %q", tt.tool, args, want, res.IsError, text(res))
			}
		}
	}
}

// Large integers arrive exactly, and the largest line count is served.
func TestLargeIntegersAreExact(t *testing.T) {
	s := newServer(t, tools.DefaultLimits, nil)
	d := newDirect(t, s)
	callRaw(t, s, d, "write_file", `{"path":"f.txt","content":"one\ntwo\n"}`)
	tests := []struct{ args, want string }{
		{`{"path":"f.txt","limit":9223372036854775807}`, `got 9223372036854775807`},
		{`{"path":"f.txt","limit":9223372036854775808}`, `got 9223372036854775808`},
		{`{"path":"f.txt","limit":2147483647}`, ""},
		{`{"path":"f.txt","start_line":2,"limit":2147483647}`, ""},
	}
	for _, tt := range tests {
		res := callRaw(t, s, d, "read_file", tt.args)
		if tt.want == "" {
			if res.IsError {
				t.Errorf("%s: %s", tt.args, text(res))
			}
			continue
		}
		if !res.IsError || !strings.Contains(text(res), tt.want) {
			t.Errorf("%s: want error with %q, got %q", tt.args, tt.want, text(res))
		}
	}
	res := callRaw(t, s, d, "read_file", `{"path":"f.txt","start_line":2,"limit":2147483647}`)
	if got := res.StructuredContent.(tools.ReadFileResult).Content; got != "two\n" {
		t.Errorf("offset 2 with the largest limit read %q", got)
	}
}

// Arguments that are not what the tool takes say so instead of turning into
// a zero value.
func TestArgumentShapes(t *testing.T) {
	s := newServer(t, tools.DefaultLimits, nil)
	d := newDirect(t, s)
	tests := []struct{ tool, args, want string }{
		{"run_command", `{"command":"true","env":{"A":null}}`, `env variable "A" is null`},
		{"run_command", `{"command":"true","env":{"A":1}}`, `env variable "A" must be a string, not 1`},
		{"run_command", `{"command":"true","env":["A"]}`, `"env" must be an object of string values`},
		{"process_start", `{"command":"true","env":{"B":null}}`, `env variable "B" is null`},
		{"sandbox_create", `{"env":{"C":null}}`, `env variable "C" is null`},
		{"run_command", `{"command":"true","Command":"x"}`, `unknown argument "Command"`},
		{"run_command", `["true"]`, `arguments must be a JSON object`},
		{"run_command", `{"command":"echo $A","env":null}`, ""},
		{"run_command", `{"command":"test \"$A\" = x","env":{"A":"x"}}`, ""},
	}
	for _, tt := range tests {
		res := callRaw(t, s, d, tt.tool, tt.args)
		switch {
		case tt.want == "" && (res.IsError || *res.StructuredContent.(tools.RunCommandResult).ExitCode != 0):
			t.Errorf("%s %s: %s", tt.tool, tt.args, text(res))
		case tt.want != "" && (!res.IsError || !strings.Contains(text(res), tt.want)):
			t.Errorf("%s %s: want error with %q, got %q", tt.tool, tt.args, tt.want, text(res))
		}
	}
}

// A command no provider can start is an invalid argument with a way out,
// not a provider failure that invites a retry.
func TestUnstartableCommandsAreInvalidArguments(t *testing.T) {
	s := newServer(t, tools.DefaultLimits, nil)
	d := newDirect(t, s)
	long := `{"command":"echo ` + strings.Repeat("x", 200<<10) + `"}`
	tests := []struct{ args, want string }{
		{`{"command":"echo a\u0000b"}`, "command has a NUL byte at offset 6"},
		{long, "write the script to a file with write_file"},
	}
	for _, tool := range []string{"run_command", "process_start"} {
		for _, tt := range tests {
			res := callRaw(t, s, d, tool, tt.args)
			if !res.IsError || !strings.Contains(text(res), tt.want) || strings.Contains(text(res), "retry") {
				t.Errorf("%s %.40s: want an error with %q and no retry, got %.300q", tool, tt.args, tt.want, text(res))
			}
		}
	}
}

// "offset" was a 1-based line in read_file and a 0-based byte in
// process_output; the old name now says which new one to use.
func TestOldOffsetNameSaysTheNewOne(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	mustCall(t, c, "write_file", map[string]any{"path": "f.txt", "content": "a\nb\n"})
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"read_file", map[string]any{"path": "f.txt", "offset": 1}, `argument "offset" is now called "start_line"`},
		{"process_output", map[string]any{"process_id": "x:1", "offset": 1}, `argument "offset" is now called "byte_offset"`},
	} {
		tool, want := tc.tool, tc.want
		res, _ := call(t, c, tool, tc.args)
		if !res.IsError || !strings.Contains(text(res), want) {
			t.Errorf("%s with offset: %q, want %q", tool, text(res), want)
		}
	}
}
