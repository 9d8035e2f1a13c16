package tools_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"

	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// newClient serves the tools in-process on a local provider rooted in a
// temp dir, and returns an initialized client.
func newClient(t testing.TB, lim tools.Limits) *client.Client {
	t.Helper()
	return newClients(t, lim, nil, 1)[0]
}

// call invokes a tool and returns the result with its structured content
// decoded into a generic map.
func call(t testing.TB, c *client.Client, name string, args map[string]any) (*mcp.CallToolResult, map[string]any) {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	var m map[string]any
	if res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		json.Unmarshal(b, &m)
	}
	return res, m
}

func mustCall(t testing.TB, c *client.Client, name string, args map[string]any) map[string]any {
	t.Helper()
	res, m := call(t, c, name, args)
	if res.IsError {
		t.Fatalf("%s(%v): unexpected error: %s", name, args, text(res))
	}
	return m
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func TestWholeFlow(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)

	// An agent can simply run a command: the sandbox appears on first use.
	run := mustCall(t, c, "run_command", map[string]any{"command": "echo hello; echo oops >&2; exit 3"})
	if run["exit_code"] != 3.0 || run["stdout"] != "hello\n" || run["stderr"] != "oops\n" {
		t.Fatalf("run_command: %v", run)
	}
	id := run["sandbox_id"].(string)

	mustCall(t, c, "write_file", map[string]any{"path": "src/app/main.py", "content": "print('hi')\nx = 1\n"})
	read := mustCall(t, c, "read_file", map[string]any{"path": "src/app/main.py"})
	if read["content"] != "print('hi')\nx = 1\n" || read["total_lines"] != 2.0 || read["encoding"] != "utf-8" {
		t.Fatalf("read_file: %v", read)
	}
	edit := mustCall(t, c, "edit_file", map[string]any{"path": "src/app/main.py", "old_string": "x = 1", "new_string": "x = 2"})
	if !strings.Contains(edit["diff"].(string), "-x = 1\n+x = 2\n") {
		t.Fatalf("edit_file diff: %v", edit["diff"])
	}
	out := mustCall(t, c, "run_command", map[string]any{"command": "cat main.py", "cwd": "src/app"})
	if out["stdout"] != "print('hi')\nx = 2\n" {
		t.Fatalf("cat after edit: %v", out)
	}
	list := mustCall(t, c, "list_files", map[string]any{"depth": 3})
	var paths []string
	for _, e := range list["entries"].([]any) {
		paths = append(paths, e.(map[string]any)["path"].(string))
	}
	if strings.Join(paths, ",") != "src,src/app,src/app/main.py" {
		t.Fatalf("list_files: %v", paths)
	}

	// A second sandbox becomes current; the first stays addressable.
	second := mustCall(t, c, "sandbox_create", map[string]any{"name": "scratch", "env": map[string]any{"GREETING": "bonjour"}})
	env := mustCall(t, c, "run_command", map[string]any{"command": "echo $GREETING; ls"})
	if env["sandbox_id"] != second["sandbox_id"] || env["stdout"] != "bonjour\n" {
		t.Fatalf("second sandbox: %v", env)
	}
	first := mustCall(t, c, "run_command", map[string]any{"command": "ls src", "sandbox_id": id})
	if first["stdout"] != "app\n" {
		t.Fatalf("first sandbox: %v", first)
	}
	sbs := mustCall(t, c, "sandbox_list", nil)
	if n := len(sbs["sandboxes"].([]any)); n != 2 || sbs["current_sandbox_id"] != second["sandbox_id"] {
		t.Fatalf("sandbox_list: %v", sbs)
	}
	mustCall(t, c, "sandbox_destroy", map[string]any{"sandbox_id": id})
	res, _ := call(t, c, "run_command", map[string]any{"command": "true", "sandbox_id": id})
	if !res.IsError || !strings.Contains(text(res), "not found") {
		t.Fatalf("destroyed sandbox still answers: %s", text(res))
	}
}

func TestBadArgumentsAreToolErrors(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	mustCall(t, c, "write_file", map[string]any{"path": "twice.txt", "content": "a a\n"})
	cases := []struct {
		tool string
		args map[string]any
		want string
	}{
		{"run_command", map[string]any{}, "command is empty"},
		{"run_command", map[string]any{"command": 42}, `argument "command" must be a string`},
		{"run_command", map[string]any{"cmd": "ls"}, `unknown argument "cmd"`},
		{"run_command", map[string]any{"command": "ls", "timeout_seconds": -1}, `"timeout_seconds" must be from 0 to`},
		{"run_command", map[string]any{"command": "ls", "timeout_seconds": 1e6}, "this server's maximum"},
		{"run_command", map[string]any{"command": "ls", "cwd": "nope"}, "no such file or directory"},
		{"run_command", map[string]any{"command": "ls", "env": map[string]any{"A=B": "x"}}, "is invalid"},
		{"run_command", map[string]any{"command": "ls", "sandbox_id": "not-mine"}, "not found in this session; call sandbox_list to see yours"},
		{"read_file", map[string]any{"path": "missing.txt"}, "no such file"},
		{"read_file", map[string]any{"path": "."}, "is a directory"},
		{"read_file", map[string]any{"path": "twice.txt", "start_line": 5}, "past the end"},
		{"write_file", map[string]any{"path": "x.bin", "content": "@@@", "encoding": "base64"}, "not valid base64"},
		{"write_file", map[string]any{"path": "x.txt", "content": "a", "encoding": "latin1"}, `encoding "latin1" is not supported`},
		{"edit_file", map[string]any{"path": "twice.txt", "old_string": "a", "new_string": "b"}, "matches 2 times"},
		{"edit_file", map[string]any{"path": "twice.txt", "old_string": "zzz", "new_string": "b"}, "was not found"},
		{"edit_file", map[string]any{"path": "twice.txt", "old_string": "", "new_string": "b"}, "old_string is empty"},
		{"list_files", map[string]any{"path": "twice.txt"}, "not a directory"},
		{"list_files", map[string]any{"depth": 99}, `"depth" must be an integer from 1 to 10`},
		{"sandbox_destroy", map[string]any{}, "sandbox_id is required"},
		{"sandbox_create", map[string]any{"provider": "docker"}, `provider "docker" is not enabled`},
		{"sandbox_create", map[string]any{"image": "ubuntu"}, "no images"},
	}
	for _, tc := range cases {
		res, _ := call(t, c, tc.tool, tc.args)
		if !res.IsError || !strings.Contains(text(res), tc.want) {
			t.Errorf("%s(%v): want isError containing %q, got isError=%v %q", tc.tool, tc.args, tc.want, res.IsError, text(res))
		}
	}
	// Nothing was lost: the file the failed edits aimed at is unchanged.
	if got := mustCall(t, c, "read_file", map[string]any{"path": "twice.txt"})["content"]; got != "a a\n" {
		t.Fatalf("failed edits changed the file: %q", got)
	}
}

func TestPathsCannotLeaveTheSandbox(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	mustCall(t, c, "run_command", map[string]any{"command": "ln -s /etc etc-link && mkdir sub"})
	for _, path := range []string{"../outside.txt", "sub/../../outside.txt", "/etc/passwd", "/tmp/outside.txt", "etc-link/passwd", "etc-link/new-file"} {
		for _, tool := range []string{"read_file", "write_file"} {
			res, _ := call(t, c, tool, map[string]any{"path": path, "content": "x"})
			if !res.IsError {
				t.Errorf("%s %q: succeeded, want a refusal", tool, path)
			}
		}
	}
	res, _ := call(t, c, "list_files", map[string]any{"path": "etc-link"})
	if !res.IsError {
		t.Errorf("list_files through a symlink out of the sandbox succeeded: %s", text(res))
	}
	if _, err := os.Stat("/etc/new-file"); err == nil {
		t.Fatal("a file was created through the symlink")
	}
}

func TestTimeoutKillsTheProcessTree(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	start := time.Now()
	res := mustCall(t, c, "run_command", map[string]any{"command": "sleep 1000 & echo $! > child.pid; sleep 1000", "timeout_seconds": 0.5})
	if res["timed_out"] != true || res["exit_code"] != 137.0 || time.Since(start) > 5*time.Second {
		t.Fatalf("want a timeout after ~0.5s, got %v after %v", res, time.Since(start))
	}
	// The child's pid is the sandbox's: look for it from inside.
	deadline := time.Now().Add(time.Second)
	for {
		out := mustCall(t, c, "run_command", map[string]any{"command": `pid=$(cat child.pid); if [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; then echo alive; else echo dead; fi`})
		if out["stdout"] == "dead\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background child outlived the timeout: %v", out["stdout"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A timeout reads the same in run_command and in process_output: 137 with
// timed_out, never -1, and no exit code at all while the command runs.
func TestTimeoutExitCodeIsTheSameEverywhere(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	res := mustCall(t, c, "run_command", map[string]any{"command": "sleep 30", "wait_seconds": 0.3, "timeout_seconds": 1})
	if _, has := res["exit_code"]; res["running"] != true || has {
		t.Fatalf("a running command has no exit code yet, got %v", res)
	}
	out := mustCall(t, c, "process_output", map[string]any{"process_id": res["process_id"], "wait_seconds": 10})
	proc := out["process"].(map[string]any)
	if proc["running"] != false || proc["timed_out"] != true || proc["exit_code"] != 137.0 {
		t.Fatalf("after its timeout the process reads %v, want exit_code 137 and timed_out", proc)
	}
}

func TestOutputKeepsHeadAndTail(t *testing.T) {
	lim := tools.DefaultLimits
	lim.MaxOutputBytes = 1000
	c := newClient(t, lim)
	res := mustCall(t, c, "run_command", map[string]any{"command": "seq 1 100000"})
	out := res["stdout"].(string)
	tr := res["stdout_truncated"].(map[string]any)
	total := len(seqOutput(100000))
	if tr["total_bytes"] != float64(total) {
		t.Fatalf("total_bytes %v, want %d", tr["total_bytes"], total)
	}
	head, tail, ok := strings.Cut(out, "\n[... "+strconv.FormatInt(int64(tr["dropped_bytes"].(float64)), 10)+" bytes dropped ...]\n")
	if !ok || !strings.HasPrefix(head, "1\n2\n3\n") || !strings.HasSuffix(tail, "99999\n100000\n") {
		t.Fatalf("head/tail wrong:\n%.200s ... %.200s", out, out[len(out)-200:])
	}
	if len(head)+len(tail)+int(tr["dropped_bytes"].(float64)) != total || len(head)+len(tail) != 1000 {
		t.Fatalf("kept %d+%d bytes, dropped %v, total %d", len(head), len(tail), tr["dropped_bytes"], total)
	}
}

func seqOutput(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i) + "\n")
	}
	return b.String()
}

func TestHugeOutputUsesBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("prints 200 MB")
	}
	c := newClient(t, tools.DefaultLimits)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := mustCall(t, c, "run_command", map[string]any{"command": "head -c 200000000 /dev/zero | tr '\\0' x"})
	runtime.ReadMemStats(&after)
	if tr := res["stdout_truncated"].(map[string]any); tr["total_bytes"] != 2e8 {
		t.Fatalf("total_bytes: %v", tr)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 50<<20 {
		t.Fatalf("allocated %d MiB for 200 MB of output; memory must stay bounded", got>>20)
	}
}

func TestNonUTF8Output(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	res := mustCall(t, c, "run_command", map[string]any{"command": `printf 'caf\303\251 \377\376 end'`})
	if res["stdout"] != "café \uFFFD end" || res["non_utf8_output"] != true {
		t.Fatalf("got %q, non_utf8_output=%v", res["stdout"], res["non_utf8_output"])
	}
	// The exact bytes stay reachable through a file.
	mustCall(t, c, "run_command", map[string]any{"command": `printf '\377\376' > raw.bin`})
	raw := mustCall(t, c, "read_file", map[string]any{"path": "raw.bin"})
	if raw["encoding"] != "base64" || raw["content"] != base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}) {
		t.Fatalf("read_file of binary: %v", raw)
	}
}

func TestReadFilePagesLinesAndShowsImages(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	mustCall(t, c, "run_command", map[string]any{"command": "seq 1 5000 > n.txt"})
	page := mustCall(t, c, "read_file", map[string]any{"path": "n.txt", "start_line": 4999})
	if page["content"] != "4999\n5000\n" || page["total_lines"] != 5000.0 || page["truncated"] != false {
		t.Fatalf("last page: %v", page)
	}
	first := mustCall(t, c, "read_file", map[string]any{"path": "n.txt"})
	if first["end_line"] != 2000.0 || first["truncated"] != true {
		t.Fatalf("default page: start %v end %v truncated %v", first["start_line"], first["end_line"], first["truncated"])
	}

	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	mustCall(t, c, "write_file", map[string]any{"path": "dot.png", "content": base64.StdEncoding.EncodeToString(png), "encoding": "base64"})
	res, m := call(t, c, "read_file", map[string]any{"path": "dot.png"})
	if res.IsError || m["mime_type"] != "image/png" {
		t.Fatalf("read_file png: %v %s", m, text(res))
	}
	var img *mcp.ImageContent
	for _, content := range res.Content {
		if ic, ok := content.(mcp.ImageContent); ok {
			img = &ic
		}
	}
	if img == nil || img.MIMEType != "image/png" || img.Data != base64.StdEncoding.EncodeToString(png) {
		t.Fatalf("want image content, got %#v", res.Content)
	}
}

func TestEditReplaceAllAndKeepsMode(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	mustCall(t, c, "write_file", map[string]any{"path": "run.sh", "content": "#!/bin/sh\necho one\necho one\n"})
	mustCall(t, c, "run_command", map[string]any{"command": "chmod 755 run.sh"})
	res := mustCall(t, c, "edit_file", map[string]any{"path": "run.sh", "old_string": "one", "new_string": "two", "replace_all": true})
	if res["replacements"] != 2.0 {
		t.Fatalf("replacements: %v", res)
	}
	out := mustCall(t, c, "run_command", map[string]any{"command": "./run.sh"})
	if out["stdout"] != "two\ntwo\n" {
		t.Fatalf("script after edit: %v", out)
	}
}

// A command that leaves a child holding its output returns at once, and the
// result says the child's later output is not in it.
func TestBackgroundChildrenOutputCutIsSaid(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	res, m := call(t, c, "run_command", map[string]any{"command": "echo first; (sleep 3; echo late) &"})
	if res.IsError || m["stdout"] != "first\n" || m["background_output_cut"] != true || !strings.Contains(text(res), "left running") {
		t.Fatalf("got %v: %s", m, text(res))
	}
	res, m = call(t, c, "run_command", map[string]any{"command": "echo alone"})
	if res.IsError || m["background_output_cut"] != nil || strings.Contains(text(res), "left running") {
		t.Fatalf("nothing left running, nothing to say: %v: %s", m, text(res))
	}
}

// read_file numbers the lines of the text it shows (from start_line on),
// and only there: the structured content is the file's own text.
func TestReadFileNumbersLinesInTextOnly(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	mustCall(t, c, "write_file", map[string]any{"path": "f.go", "content": "package f\n\n\tfunc A() {}\n"})
	res, m := call(t, c, "read_file", map[string]any{"path": "f.go", "start_line": 2})
	if want := "     2\t\n     3\t\tfunc A() {}"; res.IsError || text(res) != want {
		t.Errorf("text %q, want %q", text(res), want)
	}
	if m["content"] != "\n\tfunc A() {}\n" {
		t.Errorf("structured content %q, want the raw lines", m["content"])
	}
}

// Matches are placed by line:column, so three on one line read as three.
func TestEditFileNamesMatchesByLineAndColumn(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	mustCall(t, c, "write_file", map[string]any{"path": "f.txt", "content": "x = ab + ab + ab\nπ ab\n"})
	res, _ := call(t, c, "edit_file", map[string]any{"path": "f.txt", "old_string": "ab", "new_string": "cd"})
	if want := "matches 4 times in f.txt (at line:column 1:5, 1:10, 1:15, 2:3)"; !res.IsError || !strings.Contains(text(res), want) {
		t.Errorf("edit_file says %q, want %q", text(res), want)
	}
}
