package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// lineClient speaks JSON-RPC lines to the server binary over stdio.
type lineClient struct {
	t     *testing.T
	in    io.WriteCloser
	lines chan string
}

func startLineClient(t *testing.T) *lineClient {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = []string{"MCP_SANDBOX_STATE_DIR=" + t.TempDir(), "HOME=" + t.TempDir()}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &lineClient{t: t, in: in, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	return c
}

func (c *lineClient) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next line the server writes, failing after 10 s.
func (c *lineClient) next() string {
	c.t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			c.t.Fatal("the server closed stdout")
		}
		return line
	case <-time.After(10 * time.Second):
		c.t.Fatal("no answer within 10 s")
	}
	return ""
}

// answer returns the next line that is not a notification, and the
// notifications before it.
func (c *lineClient) answer() (string, []string) {
	c.t.Helper()
	var notes []string
	for {
		line := c.next()
		if strings.HasPrefix(line, `{"jsonrpc":"2.0","method":"notifications/`) {
			notes = append(notes, line)
			continue
		}
		return line, notes
	}
}

func initializeLine(version string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":%q,"capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, version)
}

const initializedLine = `{"jsonrpc":"2.0","method":"notifications/initialized"}`

// httpPost posts body to an MCP URL and returns the status and body.
func httpPost(t *testing.T, url, body string, headers map[string]string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// sseData returns the JSON of a response body, plain or as SSE events.
func sseData(body string) []string {
	if !strings.HasPrefix(body, "event:") && !strings.HasPrefix(body, "data:") {
		return []string{strings.TrimSpace(body)}
	}
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, data)
		}
	}
	return out
}

func negotiated(t *testing.T, answer string) string {
	t.Helper()
	var resp struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(answer), &resp); err != nil || resp.Result.ProtocolVersion == "" {
		t.Fatalf("not an initialize result: %s", answer)
	}
	return resp.Result.ProtocolVersion
}

// A client offering any version in initialize negotiates the same version
// over stdio and HTTP: the versions before 2026-07-28 are kept, newer ones
// (which have no initialize) negotiate down to 2025-11-25. Over HTTP that
// holds whether or not the client also names its version in the
// Mcp-Protocol-Version header, as some clients do from the first request.
func TestProtocolVersionsNegotiateAlikeOnStdioAndHTTP(t *testing.T) {
	url := startBinary(t, nil, "--http", "127.0.0.1:0", "--auth", "none")
	for _, c := range []struct{ offered, want string }{
		{"2024-11-05", "2024-11-05"},
		{"2025-03-26", "2025-03-26"},
		{"2025-06-18", "2025-06-18"},
		{"2025-11-25", "2025-11-25"},
		{"2026-07-28", "2025-11-25"},
		{"2099-01-01", "2025-11-25"},
	} {
		t.Run(c.offered, func(t *testing.T) {
			s := startLineClient(t)
			s.send(initializeLine(c.offered))
			line, _ := s.answer()
			if got := negotiated(t, line); got != c.want {
				t.Errorf("stdio: offered %s, negotiated %s, want %s", c.offered, got, c.want)
			}
			for _, headers := range []map[string]string{nil, {"Mcp-Protocol-Version": c.offered}} {
				status, _, body := httpPost(t, url, initializeLine(c.offered), headers)
				if status != http.StatusOK {
					t.Fatalf("HTTP, header %v: %d %s", headers, status, body)
				}
				if got := negotiated(t, sseData(body)[0]); got != c.want {
					t.Errorf("HTTP, header %v: offered %s, negotiated %s, want %s", headers, c.offered, got, c.want)
				}
			}
		})
	}
}

// JSON-RPC batches are served where the negotiated version has them
// (2025-03-26 only), with one response per request in order and none for
// notifications, and refused with a message naming the version elsewhere.
func TestBatchesFollowTheNegotiatedVersion(t *testing.T) {
	const batch = `[{"jsonrpc":"2.0","id":2,"method":"ping"},` +
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}},` +
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run_command","arguments":{"command":"echo batched"}}},` +
		`{"jsonrpc":"2.0","id":4,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}]`
	check := func(t *testing.T, answer string) {
		t.Helper()
		var responses []struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(answer), &responses); err != nil {
			t.Fatalf("not a batch answer: %s", answer)
		}
		if len(responses) != 3 || responses[0].ID != 2 || responses[1].ID != 3 || responses[2].ID != 4 {
			t.Fatalf("want answers to 2, 3 and 4 in order: %s", answer)
		}
		if !strings.Contains(string(responses[1].Result), `batched\n`) {
			t.Errorf("run_command in a batch: %s", responses[1].Result)
		}
		if responses[2].Error == nil || !strings.Contains(responses[2].Error.Message, "initialize must not be part of a JSON-RPC batch") {
			t.Errorf("initialize in a batch: %s", answer)
		}
	}
	refused := func(t *testing.T, answer, version string) {
		t.Helper()
		if !strings.Contains(answer, `"error"`) || !strings.Contains(answer, "2025-03-26 only") || !strings.Contains(answer, version) {
			t.Errorf("a batch under %s: want an error naming both versions, got %s", version, answer)
		}
	}

	t.Run("stdio", func(t *testing.T) {
		for _, version := range []string{"2025-03-26", "2025-06-18", "2025-11-25"} {
			s := startLineClient(t)
			s.send(initializeLine(version))
			s.answer()
			s.send(initializedLine)
			s.send(batch)
			answer, _ := s.answer()
			if version == "2025-03-26" {
				check(t, answer)
			} else {
				refused(t, answer, version)
			}
		}
	})
	t.Run("http", func(t *testing.T) {
		url := startBinary(t, nil, "--http", "127.0.0.1:0", "--auth", "none")
		for _, version := range []string{"2025-03-26", "2025-06-18", "2025-11-25"} {
			status, header, body := httpPost(t, url, initializeLine(version), nil)
			sid := header.Get("Mcp-Session-Id")
			if status != http.StatusOK || sid == "" {
				t.Fatalf("initialize %s: %d %s", version, status, body)
			}
			headers := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": version}
			httpPost(t, url, initializedLine, headers)
			status, _, body = httpPost(t, url, batch, headers)
			if version == "2025-03-26" {
				if status != http.StatusOK {
					t.Fatalf("batch: %d %s", status, body)
				}
				check(t, strings.TrimSpace(body))
			} else {
				if status != http.StatusBadRequest {
					t.Errorf("batch under %s: status %d, want 400", version, status)
				}
				refused(t, body, version)
			}
		}
	})
}

// logging/setLevel is served, and the server's log records about the
// session come to its client as notifications/message at or above the
// level it set: none before it asks, none below the level.
func TestLoggingSetLevelSendsTheSessionsLogRecords(t *testing.T) {
	s := startLineClient(t)
	s.send(initializeLine("2025-11-25"))
	if line, _ := s.answer(); !strings.Contains(line, `"logging":{}`) {
		t.Fatalf("the server does not declare logging: %s", line)
	}
	s.send(initializedLine)
	messages := func(notes []string) (out []string) {
		for _, n := range notes {
			if strings.HasPrefix(n, `{"jsonrpc":"2.0","method":"notifications/message"`) {
				out = append(out, n)
			}
		}
		return out
	}
	// call returns the log messages sent until a ping after the call is
	// answered: over stdio they are written beside the call's answer.
	call := func(id int, name, args string) []string {
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, name, args))
		line, notes := s.answer()
		if !strings.Contains(line, fmt.Sprintf(`"id":%d`, id)) || strings.Contains(line, `"isError":true`) {
			t.Fatalf("%s: %s", name, line)
		}
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, 100+id))
		line, more := s.answer()
		if !strings.Contains(line, fmt.Sprintf(`"id":%d`, 100+id)) {
			t.Fatalf("ping: %s", line)
		}
		return messages(append(notes, more...))
	}

	if got := call(2, "sandbox_create", `{}`); len(got) != 0 {
		t.Errorf("log messages before logging/setLevel: %v", got)
	}
	s.send(`{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"warning"}}`)
	if line, _ := s.answer(); !strings.Contains(line, `"result":{}`) {
		t.Fatalf("logging/setLevel: %s", line)
	}
	if got := call(4, "sandbox_create", `{}`); len(got) != 0 {
		t.Errorf("info records sent at level warning: %v", got)
	}
	s.send(`{"jsonrpc":"2.0","id":5,"method":"logging/setLevel","params":{"level":"info"}}`)
	s.answer()
	got := call(6, "sandbox_create", `{"name":"logged"}`)
	// The server queues a notification apart from the answers, so under
	// load it may follow the ping's answer: wait for it a while.
	for deadline := time.After(10 * time.Second); len(got) == 0; {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatal("the server closed stdout")
			}
			got = messages([]string{line})
		case <-deadline:
			t.Fatal("at level info, no log message came within 10 s of the call")
		}
	}
	if len(got) != 1 || !strings.Contains(got[0], `"level":"info"`) || !strings.Contains(got[0], `"message":"sandbox created"`) ||
		!strings.Contains(got[0], `"provider":"local"`) || strings.Contains(got[0], `"session"`) {
		t.Errorf("at level info, want one message about the sandbox created (without the session), got %v", got)
	}
}
