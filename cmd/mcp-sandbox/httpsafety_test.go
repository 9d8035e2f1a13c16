package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// The HTTP rules are unit-tested in internal/httpguard; these tests check
// that the server is wired to them through its flags.

const testAuthToken = "test-token-0123456789abcdef"

const initializeJSON = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

func post(t *testing.T, url, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func authedClient(t *testing.T, url string, headers map[string]string) (*client.Client, error) {
	t.Helper()
	c, err := client.NewStreamableHttpClient(url+"/mcp", transport.WithHTTPHeaders(headers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	_, err = c.Initialize(ctx, req)
	return c, err
}

func TestHTTPOrigin(t *testing.T) {
	ts, _ := newHTTP(t, "--allowed-origins", "https://app.example.com")
	tests := []struct {
		origin string
		want   int
	}{
		{"", http.StatusOK},
		{"http://localhost:6274", http.StatusOK},
		{"https://app.example.com", http.StatusOK},
		{"http://evil.example.com", http.StatusForbidden},
	}
	for _, tt := range tests {
		resp, body := post(t, ts.URL, initializeJSON, map[string]string{"Origin": tt.origin})
		if resp.StatusCode != tt.want {
			t.Errorf("Origin %q: %s %s, want %d", tt.origin, resp.Status, body, tt.want)
		}
		if tt.want == http.StatusForbidden && !strings.Contains(body, `"error"`) {
			t.Errorf("Origin %q: body %s is not a JSON-RPC error", tt.origin, body)
		}
	}
}

func TestHTTPBearerTokenGuardsEveryCall(t *testing.T) {
	ts, _ := newHTTP(t, "--auth-token", testAuthToken)

	if _, err := authedClient(t, ts.URL, nil); err == nil {
		t.Fatal("initialize without a token succeeded")
	}
	resp, body := post(t, ts.URL, initializeJSON, map[string]string{"Authorization": "Bearer not-the-token-at-all"})
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("wrong token: %s %q %s", resp.Status, resp.Header.Get("WWW-Authenticate"), body)
	}

	c, err := authedClient(t, ts.URL, map[string]string{"Authorization": "Bearer " + testAuthToken})
	if err != nil {
		t.Fatalf("initialize with the token: %v", err)
	}
	if _, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo authorised"}); isErr || !strings.Contains(text, "authorised") {
		t.Fatalf("run_command with the token: %s", text)
	}
	if resp, _ := http.Get(ts.URL + "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz needs no token, got %s", resp.Status)
	}
}

func TestHTTPBodyCap(t *testing.T) {
	ts, state := newHTTP(t, "--max-body-bytes", "64KiB")
	c := httpClient(t, ts.URL)
	sid := c.GetTransport().(*transport.StreamableHTTP).GetSessionId()
	args, _ := json.Marshal(map[string]any{"name": "write_file", "arguments": map[string]any{"path": "big.txt", "content": strings.Repeat("x", 100<<10)}})
	resp, body := post(t, ts.URL, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":`+string(args)+`}`,
		map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"})
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "65536 bytes") {
		t.Fatalf("100 KiB write over a 64 KiB cap: %s %s", resp.Status, body)
	}
	if len(sandboxDirs(t, state)) != 0 {
		t.Error("a rejected call created a sandbox")
	}
	if _, isErr, text := callTool(t, c, "write_file", map[string]any{"path": "small.txt", "content": "fits"}); isErr {
		t.Fatalf("small write in the same session: %s", text)
	}
}

// At the session cap a new client gets in: the longest-idle session ends,
// and its sandboxes go with it as at idle expiry. Clients that never send
// DELETE (a CLI opening a session per call) cannot lock the server out.
func TestHTTPSessionCapEndsTheLongestIdle(t *testing.T) {
	ts, state := newHTTP(t, "--max-sessions", "2", "--session-evict-idle", "1ms")
	first, second := httpClient(t, ts.URL), httpClient(t, ts.URL)
	for _, c := range []*client.Client{first, second} {
		if _, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "true"}); isErr {
			t.Fatal(text)
		}
	}
	if n := len(sandboxDirs(t, state)); n != 2 {
		t.Fatalf("%d sandboxes, want 2", n)
	}
	firstID := first.GetTransport().(*transport.StreamableHTTP).GetSessionId()
	callTool(t, second, "list_files", nil) // second is the more recently active

	third := httpClient(t, ts.URL)
	if _, isErr, text := callTool(t, third, "run_command", map[string]any{"command": "true"}); isErr {
		t.Fatal(text)
	}
	if n := len(sandboxDirs(t, state)); n != 2 {
		t.Fatalf("%d sandboxes after the eviction, want 2: the ended session's sandbox must be gone", n)
	}
	resp, _ := post(t, ts.URL, `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": firstID})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the longest-idle session after eviction: %s, want 404", resp.Status)
	}
	if _, isErr, text := callTool(t, second, "list_files", nil); isErr {
		t.Fatalf("the more recent session should live on: %s", text)
	}
}

func TestHTTPSandboxCapPerSession(t *testing.T) {
	ts, _ := newHTTP(t, "--max-sandboxes-per-session", "1")
	alice, bob := httpClient(t, ts.URL), httpClient(t, ts.URL)
	if _, isErr, text := callTool(t, alice, "sandbox_create", nil); isErr {
		t.Fatal(text)
	}
	_, isErr, text := callTool(t, alice, "sandbox_create", nil)
	if !isErr || !strings.Contains(text, "the limit per session") {
		t.Fatalf("second sandbox over a cap of 1: isError=%v %q", isErr, text)
	}
	if _, isErr, text := callTool(t, bob, "sandbox_create", nil); isErr {
		t.Fatalf("another session's cap is its own: %s", text)
	}
}

func TestHTTPSettingsErrors(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--http", "0.0.0.0:0", "--auth", "none"}, nil, "refusing to listen on 0.0.0.0:0 (0.0.0.0) without an auth token"},
		{nil, []string{"MCP_SANDBOX_HTTP=[::]:0", "MCP_SANDBOX_AUTH=none"}, "without an auth token"},
		{[]string{"--http", "127.0.0.1:0", "--auth", "off"}, nil, `invalid value "off" for --auth (MCP_SANDBOX_AUTH): use one of token, none`},
		{[]string{"--http", "127.0.0.1:0", "--auth", "none", "--auth-token", testAuthToken}, nil, "a token is configured too"},
		{[]string{"--http", "unix:relative.sock"}, nil, "use unix:/absolute/path.sock"},
		{[]string{"--http", "127.0.0.1:0", "--auth-token", "short"}, nil, "use at least 16 random characters"},
		{[]string{"--http", "127.0.0.1:0", "--auth-token-file", "/nonexistent/token"}, nil, "reading the auth token file"},
		{[]string{"--http", "127.0.0.1:0", "--allowed-origins", "example.com"}, nil, `invalid value "example.com" for --allowed-origins`},
		{[]string{"--max-sessions", "-1"}, nil, "--max-sessions"},
		{[]string{"--max-body-bytes", "lots"}, nil, "--max-body-bytes"},
	}
	for _, tc := range cases {
		cmd := exec.Command(binary, tc.args...)
		cmd.Env = append([]string{"HOME=" + t.TempDir()}, tc.env...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); err == nil || code != 2 {
			t.Errorf("%v %v: exit %d, want 2", tc.args, tc.env, code)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v %v: want one line containing %q, got:\n%s", tc.args, tc.env, tc.want, out)
		}
	}
}

// With a token the server does listen on every interface.
func TestHTTPNonLoopbackStartsWithATokenFile(t *testing.T) {
	tokenFile := t.TempDir() + "/token"
	os.WriteFile(tokenFile, []byte(testAuthToken+"\n"), 0o600)
	url := startBinary(t, []string{"MCP_SANDBOX_AUTH_TOKEN_FILE=" + tokenFile}, "--http", "0.0.0.0:0")
	// It listens on every interface; reach it over loopback.
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	if host := u.Hostname(); host != "0.0.0.0" && host != "::" {
		t.Fatalf("listening on %s, want every interface", u.Host)
	}
	url = "http://127.0.0.1:" + u.Port()
	resp, body := post(t, url, initializeJSON, map[string]string{"Authorization": "Bearer " + testAuthToken})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("initialize with the token from the file: %s %s", resp.Status, body)
	}
	resp, _ = post(t, url, initializeJSON, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("initialize without the token: %s", resp.Status)
	}
}

// SIGINT during a tool call: the call still completes and is answered, then
// the session ends, its sandbox is destroyed and the server exits 0.
func TestHTTPShutdownLetsInFlightCallsFinish(t *testing.T) {
	state := t.TempDir()
	url, cmd := startBinaryCmd(t, []string{"MCP_SANDBOX_STATE_DIR=" + state}, "--http", "127.0.0.1:0", "--auth", "none")
	c, err := client.NewStreamableHttpClient(url)
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)
	type result struct {
		isErr bool
		text  string
		out   map[string]any
	}
	done := make(chan result, 1)
	go func() {
		out, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "sleep 1; echo finished"})
		done <- result{isErr, text, out}
	}()
	waitFor(t, "the sandbox of the running call", func() bool { return len(sandboxDirs(t, state)) == 1 })
	time.Sleep(200 * time.Millisecond) // the command is running
	cmd.Process.Signal(os.Interrupt)

	select {
	case r := <-done:
		if r.isErr || r.out["stdout"] != "finished\n" {
			t.Fatalf("in-flight call across shutdown: isError=%v %s", r.isErr, r.text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight call got no answer")
	}
	waitCleanExit(t, cmd, state)
}
