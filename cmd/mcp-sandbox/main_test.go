package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/client/transport"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// binary is the server built once for the tests that run it as a process.
var binary string

func TestMain(m *testing.M) {
	if jail.IsInit(os.Args) {
		os.Exit(jail.Main(os.Args)) // in-process tests' local sandboxes
	}
	if os.Getenv("MCP_SANDBOX_PROBE_URL") != "" {
		os.Exit(m.Run()) // the probe client of auth_test.go needs no binary
	}
	dir, err := os.MkdirTemp("", "mcp-sandbox-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mcp-sandbox")
	// The binary under test also serves the conformance suite's fixtures
	// (with --conformance-fixtures); production builds have none.
	if out, err := exec.Command("go", "build", "-tags", "conformance", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func initialize(t testing.TB, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatal(err)
	}
}

func callTool(t testing.TB, c *client.Client, name string, args map[string]any) (map[string]any, bool, string) {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var text string
	if len(res.Content) > 0 {
		if tc, ok := res.Content[0].(mcp.TextContent); ok {
			text = tc.Text
		}
	}
	var m map[string]any
	b, _ := json.Marshal(res.StructuredContent)
	json.Unmarshal(b, &m)
	return m, res.IsError, text
}

func sandboxDirs(t testing.TB, stateDir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(stateDir, "local"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStdioEndToEnd(t *testing.T) {
	state := t.TempDir()
	env := []string{"MCP_SANDBOX_STATE_DIR=" + state, "E2B_API_KEY=server-secret", "HOME=" + t.TempDir()}
	c, err := client.NewStdioMCPClient(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)
	list, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil || len(list.Tools) < 8 {
		t.Fatalf("tools/list: %v %d tools", err, len(list.Tools))
	}
	res, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "echo from-stdio; env"})
	if isErr || !strings.HasPrefix(res["stdout"].(string), "from-stdio\n") {
		t.Fatalf("run_command: %s", text)
	}
	if strings.Contains(res["stdout"].(string), "server-secret") {
		t.Fatal("the server's environment reached the sandbox")
	}
	if n := len(sandboxDirs(t, state)); n != 1 {
		t.Fatalf("want 1 sandbox on disk, got %d", n)
	}
	// EOF on stdin ends the session, and its sandboxes go with it.
	c.Close()
	waitFor(t, "sandboxes removed after stdio EOF", func() bool { return len(sandboxDirs(t, state)) == 0 })
}

// In stdio mode stdout carries nothing but JSON-RPC, even when logging is
// verbose.
func TestStdioStdoutIsOnlyProtocol(t *testing.T) {
	cmd := exec.Command(binary, "--log-level", "debug")
	cmd.Env = []string{"MCP_SANDBOX_STATE_DIR=" + t.TempDir(), "HOME=" + t.TempDir()}
	// Like a client, keep stdin open until the answers are in: the end of
	// stdin is the end of the session, and cancels what still runs.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}
{"jsonrpc":"2.0","method":"notifications/initialized"}
{"jsonrpc":"2.0","id":2,"method":"tools/list"}
{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"echo hi"}}}
`)
	ids := map[float64]bool{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	for !(ids[1] && ids[2] && ids[3]) && sc.Scan() {
		var msg struct {
			JSONRPC string  `json:"jsonrpc"`
			ID      float64 `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil || msg.JSONRPC != "2.0" {
			t.Fatalf("stdout line is not JSON-RPC: %q", sc.Text())
		}
		ids[msg.ID] = true
	}
	stdin.Close()
	for sc.Scan() {
		t.Errorf("stdout after the answers: %q", sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !ids[1] || !ids[2] || !ids[3] {
		t.Fatalf("missing responses; got ids %v\nstderr:\n%s", ids, stderr.String())
	}
	if !strings.Contains(stderr.String(), "sandbox created") {
		t.Fatalf("logs should go to stderr; got:\n%s", stderr.String())
	}
}

// newHTTP serves the app over httptest.
func newHTTP(t testing.TB, extraArgs ...string) (*httptest.Server, string) {
	t.Helper()
	return newHTTPLogging(t, io.Discard, extraArgs...)
}

// newHTTPLogging is newHTTP with the server's log written to w.
func newHTTPLogging(t testing.TB, w io.Writer, extraArgs ...string) (*httptest.Server, string) {
	t.Helper()
	state := t.TempDir()
	cfg, err := loadConfig(append([]string{"--state-dir", state, "--env-file", os.DevNull}, extraArgs...), func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		t.Fatal(err)
	}
	handler, mcpHTTP, _ := a.httpHandler()
	ts := httptest.NewServer(handler)
	t.Cleanup(func() {
		mcpHTTP.Shutdown(context.Background())
		ts.Close()
		a.close()
	})
	return ts, state
}

func httpClient(t testing.TB, url string) *client.Client {
	t.Helper()
	c, err := client.NewStreamableHttpClient(url + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHTTPSessionsAreIsolated(t *testing.T) {
	ts, state := newHTTP(t)
	alice, bob := httpClient(t, ts.URL), httpClient(t, ts.URL)

	res, isErr, text := callTool(t, alice, "run_command", map[string]any{"command": "echo secret > notes.txt"})
	if isErr {
		t.Fatal(text)
	}
	aliceBox := res["sandbox_id"].(string)
	proc, isErr, text := callTool(t, alice, "process_start", map[string]any{"command": "cat notes.txt; sleep 1000", "keep_stdin_open": true})
	if isErr {
		t.Fatal(text)
	}
	aliceProc := proc["process_id"].(string)

	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"run_command", map[string]any{"command": "cat notes.txt", "sandbox_id": aliceBox}},
		{"read_file", map[string]any{"path": "notes.txt", "sandbox_id": aliceBox}},
		{"write_file", map[string]any{"path": "x", "content": "x", "sandbox_id": aliceBox}},
		{"sandbox_destroy", map[string]any{"sandbox_id": aliceBox}},
		{"process_output", map[string]any{"process_id": aliceProc}},
		{"process_write_stdin", map[string]any{"process_id": aliceProc, "data": "x"}},
		{"process_kill", map[string]any{"process_id": aliceProc, "signal": "KILL"}},
		{"process_list", map[string]any{"sandbox_id": aliceBox}},
	} {
		_, isErr, text := callTool(t, bob, tc.tool, tc.args)
		if !isErr || !strings.Contains(text, "not found") {
			t.Errorf("bob's %s on alice's sandbox: want not found, got %q", tc.tool, text)
		}
	}
	list, _, _ := callTool(t, bob, "sandbox_list", nil)
	if n := len(list["sandboxes"].([]any)); n != 0 {
		t.Fatalf("bob sees %d sandboxes", n)
	}
	if list, _, _ := callTool(t, bob, "process_list", nil); len(list["processes"].([]any)) != 0 {
		t.Fatalf("bob sees processes: %v", list)
	}
	// Alice's file and process are untouched.
	if out, _, text := callTool(t, alice, "process_output", map[string]any{"process_id": aliceProc, "wait_seconds": 5}); out["data"] != "secret\n" {
		t.Fatalf("alice's process output: %s", text)
	}
	res, _, _ = callTool(t, alice, "read_file", map[string]any{"path": "notes.txt"})
	if res["content"] != "secret\n" {
		t.Fatalf("alice's file: %v", res)
	}
	if n := len(sandboxDirs(t, state)); n != 1 {
		t.Fatalf("want only alice's sandbox on disk, got %d", n)
	}
}

func TestHTTPDeletedSessionIsGoneWithItsSandboxes(t *testing.T) {
	ts, state := newHTTP(t)
	c, err := client.NewStreamableHttpClient(ts.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)
	if _, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "true"}); isErr {
		t.Fatal(text)
	}
	sid := c.GetTransport().(*transport.StreamableHTTP).GetSessionId()
	if len(sandboxDirs(t, state)) != 1 {
		t.Fatal("no sandbox on disk")
	}
	c.Close() // sends DELETE
	waitFor(t, "sandbox removed after DELETE", func() bool { return len(sandboxDirs(t, state)) == 0 })

	for _, id := range []string{sid, "mcp-session-00000000-0000-0000-0000-000000000000"} {
		req, _ := http.NewRequest("POST", ts.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("session %s: want 404, got %d", id, resp.StatusCode)
		}
	}
}

func TestHTTPIdleSessionExpires(t *testing.T) {
	ts, state := newHTTP(t, "--session-idle-timeout", "1500ms", "--wait-seconds", "1")
	c := httpClient(t, ts.URL)
	if _, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "true"}); isErr {
		t.Fatal(text)
	}
	waitFor(t, "idle session's sandbox removed", func() bool { return len(sandboxDirs(t, state)) == 0 })
}

func TestHealthz(t *testing.T) {
	ts, _ := newHTTP(t)
	resp, err := http.Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
}

func TestHTTPBinaryServesAndShutsDownCleanly(t *testing.T) {
	state := t.TempDir()
	cmd := exec.Command(binary, "--http", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir()}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := ""
	sc := bufio.NewScanner(stderr)
	for url == "" && sc.Scan() {
		var line struct{ Msg, URL string }
		json.Unmarshal(sc.Bytes(), &line)
		url = line.URL
	}
	go io.Copy(io.Discard, stderr)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("no listening URL logged")
	}
	// Without a configured token the server generated one for its user.
	token, err := os.ReadFile(filepath.Join(state, "http-token"))
	if err != nil {
		t.Fatalf("no generated token: %v", err)
	}
	c, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(token))}))
	if err != nil {
		t.Fatal(err)
	}
	initialize(t, c)
	if _, isErr, text := callTool(t, c, "run_command", map[string]any{"command": "true"}); isErr {
		t.Fatal(text)
	}
	cmd.Process.Signal(os.Interrupt)
	waitCleanExit(t, cmd, state)
}

// waitCleanExit waits for a server told to stop: it must exit 0 within 10s
// and leave no sandbox behind.
func waitCleanExit(t *testing.T, cmd *exec.Cmd, state string) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGINT")
	}
	if n := len(sandboxDirs(t, state)); n != 0 {
		t.Fatalf("%d sandboxes left after shutdown", n)
	}
}

func TestBadConfigExitsWithOneClearLine(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--provider", "nope"}, nil, `provider "nope" (--provider / MCP_SANDBOX_PROVIDER): unknown provider "nope"`},
		{nil, []string{"MCP_SANDBOX_PROVIDER=nope"}, `unknown provider "nope"`},
		{[]string{"--max-output-bytes", "lots"}, nil, `invalid value "lots" for --max-output-bytes (MCP_SANDBOX_MAX_OUTPUT_BYTES)`},
		{nil, []string{"MCP_SANDBOX_KEEP_SANDBOXES=maybe"}, `invalid value "maybe" for --keep-sandboxes`},
		{[]string{"--http", "localhost:99999"}, nil, "the port must be a number"},
		{[]string{"--no-such-flag"}, nil, "flag provided but not defined: -no-such-flag"},
		{[]string{"--env-file", "/nonexistent/.env"}, nil, `cannot read env file "/nonexistent/.env"`},
		{[]string{"--wait-seconds", "-5"}, nil, `invalid value "-5" for --wait-seconds (MCP_SANDBOX_WAIT_SECONDS)`},
		{nil, []string{"MCP_SANDBOX_MAX_PROCESS_OUTPUT=32KiB"}, `must be at least --max-output-bytes`},
		{[]string{"--max-file-bytes", "0"}, nil, `use a size of at least 1 byte, such as`},
		{[]string{"--session-idle-timeout", "30s"}, nil, `must be longer than --wait-seconds (45s)`},
	}
	for _, tc := range cases {
		out, err := execBinary(t, tc.env, tc.args...)
		if err == nil {
			t.Errorf("%v %v: exited 0", tc.args, tc.env)
			continue
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v %v: want one line containing %q, got:\n%s", tc.args, tc.env, tc.want, out)
		}
	}
}

// execBinary runs the server with only the given environment and a fresh
// HOME and working directory, and returns what it printed.
func execBinary(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir()}, env...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, ".env")
	os.WriteFile(envFile, []byte("MCP_SANDBOX_MAX_OUTPUT_BYTES=1KiB\nMCP_SANDBOX_COMMAND_TIMEOUT=30s\nMCP_SANDBOX_LOG_LEVEL=warn\nE2B_API_KEY=from-dotenv\n"), 0o600)
	env := map[string]string{"MCP_SANDBOX_COMMAND_TIMEOUT": "45s", "MCP_SANDBOX_LOG_LEVEL": "error"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := loadConfig([]string{"--env-file", envFile, "--log-level", "debug"}, lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxOutputBytes != 1024 { // only in .env
		t.Errorf("max output: %d", cfg.Limits.MaxOutputBytes)
	}
	if cfg.Limits.DefaultTimeout != 45*time.Second { // env beats .env
		t.Errorf("command timeout: %v", cfg.Limits.DefaultTimeout)
	}
	if cfg.LogLevel != slog.LevelDebug { // flag beats env
		t.Errorf("log level: %v", cfg.LogLevel)
	}
	if cfg.Getenv("E2B_API_KEY") != "from-dotenv" { // providers see .env too
		t.Errorf("provider settings from .env: %q", cfg.Getenv("E2B_API_KEY"))
	}
	if cfg.Limits.Wait != 45*time.Second || cfg.Limits.MaxProcessOutputBytes != 64<<20 {
		t.Errorf("process defaults: wait %v, output %d", cfg.Limits.Wait, cfg.Limits.MaxProcessOutputBytes)
	}
	if cfg.HTTPAddr != "" || cfg.Provider != "local" {
		t.Errorf("defaults: %+v", cfg)
	}
	cfg, err = loadConfig([]string{"--http", ":8080", "--env-file", os.DevNull}, lookup, io.Discard)
	if err != nil || cfg.HTTPAddr != "127.0.0.1:8080" {
		t.Errorf("a bare port must bind loopback: %q %v", cfg.HTTPAddr, err)
	}
}

func TestHelpDocumentsEveryFlagWithItsEnvVar(t *testing.T) {
	out, err := exec.Command(binary, "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(settings, driverSettings()...) {
		listed := strings.Contains(string(out), "-"+s.flag+" ") || strings.Contains(string(out), "-"+s.flag+"\n")
		if (s.flag != "" && !listed) || !strings.Contains(string(out), s.env) {
			t.Errorf("--help lacks --%s / %s", s.flag, s.env)
		}
	}
}

// Driver settings follow the server's precedence and report their source.
func TestDriverSettingsPrecedenceAndSource(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, ".env")
	os.WriteFile(envFile, []byte("MCP_SANDBOX_DOCKER_MEMORY=2g\nMCP_SANDBOX_DOCKER_CPUS=3\nMCP_SANDBOX_E2B_TEMPLATE=dotenv\n"), 0o600)
	env := map[string]string{"MCP_SANDBOX_DOCKER_CPUS": "2", "MCP_SANDBOX_E2B_TEMPLATE": "environment"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := loadConfig([]string{"--env-file", envFile, "--e2b-template", "flag"}, lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ env, value, source string }{
		{"MCP_SANDBOX_E2B_TEMPLATE", "flag", "--e2b-template"},
		{"MCP_SANDBOX_DOCKER_CPUS", "2", "the environment"},
		{"MCP_SANDBOX_DOCKER_MEMORY", "2g", "the .env file " + envFile},
		{"MCP_SANDBOX_DOCKER_PIDS", "", "the default"},
	} {
		if v, src := cfg.Getenv(tc.env), cfg.Source(tc.env); v != tc.value || src != tc.source {
			t.Errorf("%s = %q from %q, want %q from %q", tc.env, v, src, tc.value, tc.source)
		}
	}
}

func TestBadDriverSettingNamesItAndItsSource(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".env"), []byte("E2B_API_KEY=k\nMCP_SANDBOX_E2B_TIMEOUT=soon\n"), 0o600)
	cmd := exec.Command(binary, "--provider", "e2b", "--env-file", ".env")
	cmd.Env = []string{"HOME=" + t.TempDir()}
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `invalid value "soon" for MCP_SANDBOX_E2B_TIMEOUT (from the .env file .env)`) {
		t.Fatalf("want one line naming the setting and the .env file, got %v: %s", err, out)
	}
}

// Every setting a driver declares is documented in the README, with its flag.
func TestREADMEListsEveryProviderSetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range providers.Names() {
		for _, s := range providers.Settings(name) {
			if !strings.Contains(string(readme), "`"+s.Env+"`") {
				t.Errorf("README does not document %s (provider %s)", s.Env, name)
			}
			if s.Flag != "" && !s.Secret && !strings.Contains(string(readme), "`--"+s.Flag+"`") {
				t.Errorf("README does not document --%s (provider %s)", s.Flag, name)
			}
		}
	}
}

// The production build carries no conformance fixtures: this test binary is
// built without the conformance tag, as a release is.
func TestProductionBuildHasNoConformanceFixtures(t *testing.T) {
	if conformanceFixtures != nil {
		t.Fatal("conformance fixtures are linked into a build without -tags conformance")
	}
	cfg, err := loadConfig([]string{"--conformance-fixtures", "--env-file", os.DevNull, "--state-dir", t.TempDir()}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newApp(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "-tags conformance") {
		t.Fatalf("want a refusal naming the build tag, got %v", err)
	}
}
