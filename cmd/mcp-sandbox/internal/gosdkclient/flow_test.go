package gosdkclient

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const token = "gosdk-test-token-0123456789"

func serverBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("MCP_SANDBOX_BINARY")
	if bin == "" {
		t.Skip("MCP_SANDBOX_BINARY is not set: run through TestGoSDKClient in cmd/mcp-sandbox")
	}
	return bin
}

func serverEnv(t *testing.T) []string {
	return []string{"MCP_SANDBOX_STATE_DIR=" + t.TempDir(), "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
}

// logs collects the notifications/message the client receives.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) handler(_ context.Context, r *mcp.LoggingMessageRequest) {
	b, _ := json.Marshal(r.Params.Data)
	l.mu.Lock()
	l.msgs = append(l.msgs, string(r.Params.Level)+" "+string(b))
	l.mu.Unlock()
}

func (l *logs) contain(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func connect(t *testing.T, transport mcp.Transport, l *logs) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "go-sdk-flow", Version: "1"}, &mcp.ClientOptions{LoggingMessageHandler: l.handler})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStdio(t *testing.T) {
	cmd := exec.Command(serverBinary(t))
	cmd.Env = serverEnv(t)
	var l logs
	s := connect(t, &mcp.CommandTransport{Command: cmd}, &l)
	// Over stdio the SDK reaches the stateless 2026-07-28 revision.
	if v := s.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Errorf("negotiated %s over stdio, want 2026-07-28", v)
	}
	flow(t, s, &l)
}

func TestStreamableHTTP(t *testing.T) {
	cmd := exec.Command(serverBinary(t), "--http", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = append(serverEnv(t), "MCP_SANDBOX_AUTH_TOKEN="+token)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	})
	var url string
	sc := bufio.NewScanner(stderr)
	for url == "" && sc.Scan() {
		var line struct{ URL string }
		json.Unmarshal(sc.Bytes(), &line)
		url = line.URL
	}
	if url == "" {
		t.Fatal("the server logged no URL")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	var l logs
	client := &http.Client{Transport: bearer{http.DefaultTransport}}
	s := connect(t, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: client}, &l)
	// Sandboxes belong to sessions, which 2026-07-28 does not have over
	// HTTP: the SDK negotiates the last revision with sessions.
	if v := s.InitializeResult().ProtocolVersion; v != "2025-11-25" {
		t.Errorf("negotiated %s over HTTP, want 2025-11-25", v)
	}
	flow(t, s, &l)
}

type bearer struct{ next http.RoundTripper }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+token)
	return b.next.RoundTrip(r)
}

// flow is what an agent does with a sandbox: every tool once, each result's
// structuredContent checked against the tool's outputSchema.
func flow(t *testing.T, s *mcp.ClientSession, l *logs) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	schemas := map[string]*jsonschema.Resolved{}
	for _, tool := range list.Tools {
		if tool.OutputSchema == nil {
			t.Errorf("%s has no outputSchema", tool.Name)
			continue
		}
		b, _ := json.Marshal(tool.OutputSchema)
		var schema jsonschema.Schema
		if err := json.Unmarshal(b, &schema); err != nil {
			t.Fatalf("%s outputSchema: %v", tool.Name, err)
		}
		resolved, err := schema.Resolve(nil)
		if err != nil {
			t.Fatalf("%s outputSchema does not resolve: %v", tool.Name, err)
		}
		schemas[tool.Name] = resolved
	}
	if err := s.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Errorf("logging/setLevel: %v", err)
	}

	called := map[string]bool{}
	call := func(name string, args map[string]any) map[string]any {
		t.Helper()
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.IsError {
			t.Fatalf("%s(%v): %v", name, args, res.Content)
		}
		b, _ := json.Marshal(res.StructuredContent)
		var structured map[string]any
		if err := json.Unmarshal(b, &structured); err != nil || structured == nil {
			t.Fatalf("%s: structuredContent is not an object: %s", name, b)
		}
		if err := schemas[name].Validate(structured); err != nil {
			t.Errorf("%s: structuredContent does not match the outputSchema: %v\n%s", name, err, b)
		}
		called[name] = true
		return structured
	}

	sb := call("sandbox_create", map[string]any{"name": "go-sdk"})
	id, _ := sb["sandbox_id"].(string)
	call("sandbox_list", nil)
	call("write_file", map[string]any{"path": "dir/hello.txt", "content": "hello\nworld\n"})
	if got := call("read_file", map[string]any{"path": "dir/hello.txt"}); got["content"] != "hello\nworld\n" {
		t.Errorf("read_file content %q", got["content"])
	}
	call("edit_file", map[string]any{"path": "dir/hello.txt", "old_string": "world", "new_string": "sdk"})
	call("list_files", map[string]any{"path": "dir"})
	if got := call("run_command", map[string]any{"command": "cat dir/hello.txt"}); got["stdout"] != "hello\nsdk\n" {
		t.Errorf("run_command stdout %q", got["stdout"])
	}
	p := call("process_start", map[string]any{"command": "cat", "keep_stdin_open": true})
	pid, _ := p["process_id"].(string)
	call("process_write_stdin", map[string]any{"process_id": pid, "data": "ping\n", "wait_for": "ping", "wait_seconds": 10})
	call("process_output", map[string]any{"process_id": pid})
	call("process_list", nil)
	call("process_kill", map[string]any{"process_id": pid, "signal": "KILL"})
	call("sandbox_destroy", map[string]any{"sandbox_id": id})
	for _, tool := range list.Tools {
		if !called[tool.Name] {
			t.Errorf("the flow does not call %s: add it", tool.Name)
		}
	}
	// The log records about this session reach its client at level info.
	deadline := time.Now().Add(5 * time.Second)
	for !l.contain(`"sandbox created"`) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !l.contain(`"sandbox created"`) {
		t.Errorf("no log message about the sandbox created after logging/setLevel info")
	}
}
