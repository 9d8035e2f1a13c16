package tools_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/session"
	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// execOnly hides the local driver's optional interfaces, standing for a
// provider without background processes.
type execOnly struct{ providers.Provider }

// startOnly keeps Processes but hides ProcessRunner, standing for a
// provider (docker, say) that runs every command as a background process.
type startOnly struct {
	providers.Provider
	providers.Processes
}

type runPath struct {
	name string
	wrap func(providers.Provider) providers.Provider
}

// runPaths are the three ways run_command can run a command.
var runPaths = []runPath{
	{"foreground", nil},
	{"background-process", func(p providers.Provider) providers.Provider { return startOnly{p, p.(providers.Processes)} }},
	{"exec-only", func(p providers.Provider) providers.Provider { return execOnly{p} }},
}

// newServer serves the tools on a local provider (wrapped by wrap, if set).
func newServer(t testing.TB, lim tools.Limits, wrap func(providers.Provider) providers.Provider) *server.MCPServer {
	t.Helper()
	var p providers.Provider
	p, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		p = wrap(p)
	}
	mgr, err := session.New(session.Config{Providers: providers.Wrap(map[string]providers.Provider{"local": p}), Default: "local", ServerID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s := server.NewMCPServer("mcp-sandbox", "test", server.WithToolCapabilities(false))
	tools.Register(s, mgr, lim)
	t.Cleanup(func() { mgr.Close(context.Background()) })
	return s
}

// newClients connects n clients to one server, each its own MCP session.
func newClients(t testing.TB, lim tools.Limits, wrap func(providers.Provider) providers.Provider, n int) []*client.Client {
	t.Helper()
	s := newServer(t, lim, wrap)
	var cs []*client.Client
	for range n {
		c, err := client.NewInProcessClient(s)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		init := mcp.InitializeRequest{}
		init.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
		init.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
		if _, err := c.Initialize(ctx, init); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// direct calls tools through the server's message handler in one session,
// skipping the JSON a client would decode, so that tests moving tens of
// megabytes stay fast.
type direct struct {
	s   *server.MCPServer
	ctx context.Context
	id  int
}

func newDirect(t testing.TB, s *server.MCPServer) *direct {
	sess := server.NewInProcessSession("direct-"+t.Name(), nil)
	if err := s.RegisterSession(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.UnregisterSession(context.Background(), sess.SessionID()) })
	return &direct{s: s, ctx: s.WithContext(context.Background(), sess)}
}

func (d *direct) call(t testing.TB, name string, args map[string]any) any {
	t.Helper()
	d.id++
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": d.id, "method": "tools/call", "params": map[string]any{"name": name, "arguments": args}})
	msg := d.s.HandleMessage(d.ctx, b)
	resp, ok := msg.(mcp.JSONRPCResponse)
	if !ok {
		t.Fatalf("%s: %#v", name, msg)
	}
	res := resp.Result.(*mcp.CallToolResult)
	if res.IsError {
		t.Fatalf("%s(%v): %s", name, args, text(res))
	}
	return res.StructuredContent
}

// readToEOF pages a stream with process_output until eof and checks that
// every page starts where the previous one ended.
func readToEOF(t *testing.T, c *client.Client, handle, stream string) ([]byte, map[string]any) {
	t.Helper()
	var all []byte
	var offset float64
	for calls := 0; ; calls++ {
		if calls > 10000 {
			t.Fatal("paging does not end")
		}
		page := mustCall(t, c, "process_output", map[string]any{"process_id": handle, "stream": stream, "byte_offset": offset, "wait_seconds": 5})
		if page["byte_offset"] != offset || page["skipped_bytes"] != nil {
			t.Fatalf("page asked at %v starts at %v (skipped %v)", offset, page["byte_offset"], page["skipped_bytes"])
		}
		data := []byte(page["data"].(string))
		if page["encoding"] == "base64" {
			var err error
			if data, err = base64.StdEncoding.DecodeString(page["data"].(string)); err != nil {
				t.Fatal(err)
			}
		}
		all = append(all, data...)
		if next := page["next_byte_offset"].(float64); next != offset+float64(len(data)) {
			t.Fatalf("next_offset %v after %d bytes at %v", next, len(data), offset)
		}
		offset = page["next_byte_offset"].(float64)
		if page["eof"] == true {
			return all, page
		}
	}
}

func TestRunCommandOutlivingItsWaitReturnsAHandle(t *testing.T) {
	for _, path := range runPaths[:2] {
		t.Run(path.name, func(t *testing.T) { testOutliving(t, path) })
	}
}

func testOutliving(t *testing.T, path runPath) {
	c := newClients(t, tools.DefaultLimits, path.wrap, 1)[0]
	mustCall(t, c, "run_command", map[string]any{"command": "true"}) // the sandbox's creation is not the wait's
	start := time.Now()
	res := mustCall(t, c, "run_command", map[string]any{"command": "echo started; sleep 3; echo done; exit 3", "wait_seconds": 0.3})
	// Well before the command's end, with room for a loaded machine.
	if _, has := res["exit_code"]; res["running"] != true || has || res["process_id"] == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("want running with a handle after ~0.3s, got %v after %v", res, time.Since(start))
	}
	handle := res["process_id"].(string)
	out, last := readToEOF(t, c, handle, "stdout")
	proc := last["process"].(map[string]any)
	if string(out) != "started\ndone\n" || proc["exit_code"] != 3.0 || proc["running"] != false {
		t.Fatalf("output %q, process %v", out, proc)
	}
	list := mustCall(t, c, "process_list", nil)
	if ps := list["processes"].([]any); len(ps) != 1 || ps[0].(map[string]any)["process_id"] != handle {
		t.Fatalf("process_list: %v", list)
	}
	// A command that finishes within its wait leaves no process behind.
	if quick := mustCall(t, c, "run_command", map[string]any{"command": "echo quick"}); quick["process_id"] != nil || quick["running"] != nil {
		t.Fatalf("quick command: %v", quick)
	}
	if ps := mustCall(t, c, "process_list", nil)["processes"].([]any); len(ps) != 1 {
		t.Fatalf("quick command left a process: %v", ps)
	}
}

// Over 50 MB of output is cut in the result but every byte can be paged,
// exactly once, through the handle.
func TestPagingReadsEveryByteOnce(t *testing.T) {
	for _, path := range runPaths[:2] {
		t.Run(path.name, func(t *testing.T) { testPaging(t, path) })
	}
}

func testPaging(t *testing.T, path runPath) {
	lim := tools.DefaultLimits
	lim.MaxReturnBytes = 1 << 20
	d := newDirect(t, newServer(t, lim, path.wrap))
	size := int64(50_000_000)
	if raceEnabled {
		size = 5_000_000
	}
	res := d.call(t, "run_command", map[string]any{"command": fmt.Sprintf("head -c %d /dev/urandom | tee blob.bin", size)}).(tools.RunCommandResult)
	tr := res.StdoutTruncated
	if tr == nil || tr.TotalBytes != size || res.ProcessID == "" || res.ExitCode == nil || *res.ExitCode != 0 {
		t.Fatalf("want a cut 50 MB stdout with a handle, got %+v", tr)
	}
	var got []byte
	var offset int64
	for page := (tools.ProcessOutputResult{}); !page.EOF; {
		page = d.call(t, "process_output", map[string]any{"process_id": res.ProcessID, "byte_offset": offset, "limit": lim.MaxReturnBytes}).(tools.ProcessOutputResult)
		data := []byte(page.Data)
		if page.Encoding == "base64" {
			data, _ = base64.StdEncoding.DecodeString(page.Data)
		}
		if page.Offset != offset || page.SkippedBytes != 0 || page.NextOffset != offset+int64(len(data)) || len(data) > lim.MaxReturnBytes {
			t.Fatalf("page asked at %d: offset %d, skipped %d, %d bytes, next %d", offset, page.Offset, page.SkippedBytes, len(data), page.NextOffset)
		}
		got = append(got, data...)
		offset = page.NextOffset
	}
	sum := d.call(t, "run_command", map[string]any{"command": "sha256sum < blob.bin"}).(tools.RunCommandResult)
	if h := sha256.Sum256(got); int64(len(got)) != int64(size) || !strings.HasPrefix(sum.Stdout, hex.EncodeToString(h[:])) {
		t.Fatalf("paged %d bytes (sha256 %x), want the %d bytes of blob.bin (%s)", len(got), h, size, sum.Stdout)
	}
	// The dropped middle named in the result is where paging picks up.
	mid := d.call(t, "process_output", map[string]any{"process_id": res.ProcessID, "byte_offset": tr.DroppedOffset, "limit": 10}).(tools.ProcessOutputResult)
	if mid.Offset != tr.DroppedOffset || mid.NextOffset <= mid.Offset {
		t.Fatalf("reading at dropped_offset: %+v", mid)
	}
}

func mustCallResult(t testing.TB, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, _ := call(t, c, name, args)
	if res.IsError {
		t.Fatalf("%s: %s", name, text(res))
	}
	return res
}

func callCtx(ctx context.Context, c *client.Client, name string, args map[string]any, token any) (*mcp.CallToolResult, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	if token != nil {
		req.Params.Meta = &mcp.Meta{ProgressToken: token}
	}
	return c.CallTool(ctx, req)
}

// waitPid waits until a command of the session's sandbox wrote a pid into
// the file name (in the sandbox), and returns it: a pid in the sandbox.
func waitPid(t *testing.T, c *client.Client, name string) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		res, err := callCtx(context.Background(), c, "read_file", map[string]any{"path": name}, nil)
		if err != nil || res.IsError {
			continue
		}
		var out struct{ Content string }
		if b, err := json.Marshal(res.StructuredContent); err == nil && json.Unmarshal(b, &out) == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(out.Content)); err == nil && strings.HasSuffix(out.Content, "\n") {
				return pid
			}
		}
	}
	t.Fatalf("%s never written", name)
	return 0
}

// alive says whether a process of the session's sandbox, known by its pid
// there, still runs (and is no zombie).
func alive(t *testing.T, c *client.Client, pid int) bool {
	t.Helper()
	out := mustCall(t, c, "run_command", map[string]any{"command": fmt.Sprintf(`if [ -d /proc/%d ] && ! grep -q '^State:.*Z' /proc/%d/status; then echo alive; fi`, pid, pid)})
	return out["stdout"] == "alive\n"
}

// progressLog collects progress notifications for one token.
type progressLog struct {
	mu    sync.Mutex
	items []map[string]any
}

func (l *progressLog) handler(token string) func(mcp.JSONRPCNotification) {
	return func(n mcp.JSONRPCNotification) {
		if n.Method != "notifications/progress" || n.Params.AdditionalFields["progressToken"] != token {
			return
		}
		// In process, the fields arrive as sent (int64); over a wire, as
		// JSON numbers. Compare them as JSON.
		var m map[string]any
		b, _ := json.Marshal(n.Params.AdditionalFields)
		json.Unmarshal(b, &m)
		l.mu.Lock()
		l.items = append(l.items, m)
		l.mu.Unlock()
	}
}

func (l *progressLog) all() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any{}, l.items...)
}

// CheckProgress asserts what a client may rely on: progress strictly
// increases, and each message is the output ending at byte progress. It
// does not rely on the last notification arriving (see mcp-go PR #969).
func CheckProgress(t testing.TB, items []map[string]any, output string, min int) {
	t.Helper()
	if len(items) < min {
		t.Fatalf("got %d progress notifications, want at least %d", len(items), min)
	}
	prev := 0.0
	for i, it := range items {
		p, _ := it["progress"].(float64)
		msg, _ := it["message"].(string)
		if p <= prev || int(p) > len(output) {
			t.Fatalf("notification %d: progress %v after %v (output is %d bytes)", i, p, prev, len(output))
		}
		if !strings.HasSuffix(output[:int(p)], msg) || msg == "" {
			t.Fatalf("notification %d: message %q is not the output before byte %v", i, msg, p)
		}
		prev = p
	}
}

const tickingCommand = "for i in $(seq 1 8); do echo tick-$i; sleep 0.25; done"

func tickingOutput() string {
	var b strings.Builder
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "tick-%d\n", i)
	}
	return b.String()
}

func TestRunCommandStreamsProgress(t *testing.T) {
	for _, tc := range runPaths {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // mostly waiting for the ticks
			c := newClients(t, tools.DefaultLimits, tc.wrap, 1)[0]
			var log progressLog
			c.OnNotification(log.handler("tok-1"))
			res, err := callCtx(context.Background(), c, "run_command", map[string]any{"command": tickingCommand}, "tok-1")
			if err != nil || res.IsError {
				t.Fatalf("%v %s", err, text(res))
			}
			time.Sleep(100 * time.Millisecond) // let the forwarder deliver
			CheckProgress(t, log.all(), tickingOutput(), 4)

			// Without a token, nothing is sent.
			var none progressLog
			c.OnNotification(none.handler("tok-1"))
			callCtx(context.Background(), c, "run_command", map[string]any{"command": "echo hi; sleep 0.5; echo there"}, nil)
			if n := len(none.all()); n != 0 {
				t.Fatalf("%d notifications without a progress token", n)
			}
		})
	}
}

// A server started with process_start answers a later run_command.
func TestBackgroundServerAnswersLaterCommand(t *testing.T) {
	type interp struct{ server, client string }
	candidates := map[string]interp{
		"python3": {
			server: `python3 -u -c 'import http.server as h, socketserver
class H(h.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello from the background")
s = socketserver.TCPServer(("127.0.0.1", 0), H); print("port", s.server_address[1]); s.serve_forever()'`,
			client: `python3 -c 'import urllib.request, sys; print(urllib.request.urlopen("http://127.0.0.1:%s/").read().decode())'`,
		},
		"perl": {
			server: `perl -MIO::Socket::INET -e '$| = 1; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 5, ReuseAddr => 1) or die $!;
print "port ", $s->sockport, "\n"; while (my $c = $s->accept) { <$c>; print $c "HTTP/1.0 200 OK\r\n\r\nhello from the background"; close $c }'`,
			client: `perl -MIO::Socket::INET -e '$c = IO::Socket::INET->new("127.0.0.1:%s") or die $!; print $c "GET / HTTP/1.0\r\n\r\n"; local $/; ($b = <$c>) =~ s/^.*?\r\n\r\n//s; print "$b\n"'`,
		},
	}
	// Probe inside the sandbox: its PATH, not the test's, decides.
	c := newClient(t, tools.DefaultLimits)
	var it interp
	for _, name := range []string{"python3", "perl"} {
		if res := mustCall(t, c, "run_command", map[string]any{"command": "command -v " + name}); res["exit_code"] == 0.0 {
			it = candidates[name]
			break
		}
	}
	if it.server == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("neither python3 nor perl is installed; run .ci/setup-processes.sh")
		}
		t.Skip("neither python3 nor perl is installed")
	}
	started := mustCall(t, c, "process_start", map[string]any{"command": it.server})
	handle := started["process_id"].(string)
	var port string
	var seen []byte
	for deadline := time.Now().Add(10 * time.Second); port == "" && time.Now().Before(deadline); {
		page := mustCall(t, c, "process_output", map[string]any{"process_id": handle, "byte_offset": len(seen), "wait_seconds": 2})
		seen = append(seen, page["data"].(string)...)
		if m := regexp.MustCompile(`port (\d+)\n`).FindSubmatch(seen); m != nil {
			port = string(m[1])
		}
		if page["eof"] == true {
			errs := mustCall(t, c, "process_output", map[string]any{"process_id": handle, "stream": "stderr"})
			t.Fatalf("server exited: %s %s", seen, errs["data"])
		}
	}
	if port == "" {
		t.Fatalf("server printed no port: %q", seen)
	}
	res := mustCall(t, c, "run_command", map[string]any{"command": fmt.Sprintf(it.client, port)})
	if res["stdout"] != "hello from the background\n" {
		t.Fatalf("client got %v", res)
	}
	kill, killed := call(t, c, "process_kill", map[string]any{"process_id": handle})
	if kill.IsError || killed["running"] != false || killed["exit_code"] != float64(128+int(syscall.SIGTERM)) {
		t.Fatalf("after process_kill: %v", killed)
	}
	if want := fmt.Sprintf("it exited with status %d.", 128+int(syscall.SIGTERM)); !strings.HasSuffix(text(kill), want) {
		t.Errorf("process_kill says %q, want it to end %q", text(kill), want)
	}
}

func TestProcessStdinRoundTrip(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	p := mustCall(t, c, "process_start", map[string]any{"command": "while read l; do echo \"got $l\"; done; echo eof", "keep_stdin_open": true})
	h := p["process_id"].(string)
	mustCall(t, c, "process_write_stdin", map[string]any{"process_id": h, "data": "one\n"})
	first := mustCall(t, c, "process_output", map[string]any{"process_id": h, "wait_seconds": 5})
	if first["data"] != "got one\n" {
		t.Fatalf("first reply: %v", first)
	}
	closed := mustCall(t, c, "process_write_stdin", map[string]any{"process_id": h, "data": "two\n", "close": true})
	if closed["stdin_open"] != false {
		t.Fatalf("after close: %v", closed)
	}
	out, _ := readToEOF(t, c, h, "stdout")
	if string(out) != "got one\ngot two\neof\n" {
		t.Fatalf("stdout %q", out)
	}
}

// Processes belong to their session like sandboxes: another session's
// handle reads as not found, for every process tool.
func TestProcessesBelongToTheirSession(t *testing.T) {
	cs := newClients(t, tools.DefaultLimits, nil, 2)
	alice, bob := cs[0], cs[1]
	h := mustCall(t, alice, "process_start", map[string]any{"command": "echo secret; sleep 1000", "keep_stdin_open": true})["process_id"].(string)
	mustCall(t, bob, "run_command", map[string]any{"command": "true"}) // bob has a sandbox of his own
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"process_output", map[string]any{"process_id": h}},
		{"process_write_stdin", map[string]any{"process_id": h, "data": "x"}},
		{"process_kill", map[string]any{"process_id": h, "signal": "KILL"}},
		{"process_list", map[string]any{"sandbox_id": strings.Split(h, ":")[0]}},
	} {
		res, _ := call(t, bob, tc.tool, tc.args)
		if !res.IsError || !strings.Contains(text(res), "not found") {
			t.Errorf("bob's %s on alice's process: want not found, got %q", tc.tool, text(res))
		}
	}
	if ps := mustCall(t, bob, "process_list", nil)["processes"].([]any); len(ps) != 0 {
		t.Fatalf("bob sees %v", ps)
	}
	if p := mustCall(t, alice, "process_output", map[string]any{"process_id": h, "wait_seconds": 5}); p["data"] != "secret\n" || p["process"].(map[string]any)["running"] != true {
		t.Fatalf("alice's process was disturbed: %v", p)
	}
}

func TestProcessToolErrors(t *testing.T) {
	c := newClient(t, tools.DefaultLimits)
	h := mustCall(t, c, "process_start", map[string]any{"command": "exit 0"})["process_id"].(string)
	sandbox := strings.Split(h, ":")[0]
	mustCall(t, c, "process_output", map[string]any{"process_id": h, "wait_seconds": 5})
	cases := []struct {
		tool string
		args map[string]any
		want string
	}{
		{"process_start", map[string]any{"command": " "}, "command is empty"},
		{"process_start", map[string]any{"command": "true", "timeout_seconds": -2}, `"timeout_seconds" must be from 0 to`},
		{"process_output", map[string]any{"process_id": "7"}, "is not a process handle"},
		{"process_output", map[string]any{"process_id": sandbox + ":99"}, "not found in this session"},
		{"process_output", map[string]any{"process_id": sandbox + ":../../x"}, "not found in this session"},
		{"process_output", map[string]any{"process_id": "nope:1"}, "not found in this session"},
		{"process_output", map[string]any{"process_id": h, "stream": "both"}, `stream must be "stdout" or "stderr"`},
		{"process_output", map[string]any{"process_id": h, "byte_offset": 100}, "past the end"},
		{"process_output", map[string]any{"process_id": h, "wait_seconds": 3600}, "this server's maximum"},
		{"process_write_stdin", map[string]any{"process_id": h}, "nothing to send"},
		{"process_write_stdin", map[string]any{"process_id": h, "data": "x"}, "without open stdin"},
		{"process_kill", map[string]any{"process_id": h}, "already exited"},
		{"process_kill", map[string]any{"process_id": h, "signal": "NOPE"}, "unknown signal"},
		{"run_command", map[string]any{"command": "true", "wait_seconds": -1}, `"wait_seconds" must be from 0 to`},
	}
	for _, tc := range cases {
		res, _ := call(t, c, tc.tool, tc.args)
		if !res.IsError || !strings.Contains(text(res), tc.want) {
			t.Errorf("%s(%v): want isError containing %q, got isError=%v %q", tc.tool, tc.args, tc.want, res.IsError, text(res))
		}
	}
}

func TestProvidersWithoutProcesses(t *testing.T) {
	c := newClients(t, tools.DefaultLimits, func(p providers.Provider) providers.Provider { return execOnly{p} }, 1)[0]
	res, _ := call(t, c, "process_start", map[string]any{"command": "sleep 1"})
	if !res.IsError || !strings.Contains(text(res), "cannot run background processes") {
		t.Fatalf("process_start: %q", text(res))
	}
	// run_command still works, with output cut the old way.
	out := mustCall(t, c, "run_command", map[string]any{"command": "seq 1 100000 | head -c 200000", "wait_seconds": 1})
	if out["process_id"] != nil || out["stdout_truncated"] == nil || !bytes.HasPrefix([]byte(out["stdout"].(string)), []byte("1\n2\n")) {
		t.Fatalf("run_command on an exec-only provider: %v", out)
	}
}

func TestRunCommandStdinReachesTheCommand(t *testing.T) {
	for _, path := range runPaths {
		c := newClients(t, tools.DefaultLimits, path.wrap, 1)[0]
		res := mustCall(t, c, "run_command", map[string]any{"command": "cat; echo; wc -c < /dev/stdin", "stdin": "line one\nline two"})
		if res["stdout"] != "line one\nline two\n0\n" {
			t.Fatalf("stdout %q", res["stdout"])
		}
		// Without stdin the command reads end-of-file at once, not a hang.
		if res := mustCall(t, c, "run_command", map[string]any{"command": "cat", "wait_seconds": 5}); res["running"] != nil || res["exit_code"] != 0.0 {
			t.Fatalf("cat without stdin: %v", res)
		}
	}
}

// A command that leaves a child holding its output (`server &`) returns
// when the shell exits, on every path.
func TestRunCommandWithBackgroundChildReturns(t *testing.T) {
	for _, path := range runPaths {
		t.Run(path.name, func(t *testing.T) {
			c := newClients(t, tools.DefaultLimits, path.wrap, 1)[0]
			start := time.Now()
			res := mustCall(t, c, "run_command", map[string]any{"command": "sleep 1000 & echo started"})
			if res["stdout"] != "started\n" || res["exit_code"] != 0.0 || res["running"] != nil || time.Since(start) > 3*time.Second {
				t.Fatalf("got %v after %v", res, time.Since(start))
			}
		})
	}
}
