package daytonafake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona/daytonafake"
)

func newFake(t *testing.T) (*daytonafake.Server, string) {
	t.Helper()
	fake, err := daytonafake.New(daytonafake.Options{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fake)
	t.Cleanup(func() { srv.Close(); fake.Close() })
	return fake, srv.URL
}

func do(t *testing.T, method, url, body string, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

// TestWireErrors: the error answers of Daytona's API and daemon, which
// clients rely on (the SDK reads statusCode, message and code).
func TestWireErrors(t *testing.T) {
	_, url := newFake(t)
	key := map[string]string{"Authorization": "Bearer k"}
	_, sb := do(t, "POST", url+"/api/sandbox", `{}`, key)
	id, _ := sb["id"].(string)
	_, stopped := do(t, "POST", url+"/api/sandbox", `{}`, key)
	stoppedID, _ := stopped["id"].(string)
	do(t, "POST", url+"/api/sandbox/"+stoppedID+"/stop", "", key)
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		header map[string]string
		status int
		code   string
	}{
		{"no API key", "GET", "/api/sandbox", "", nil, 401, ""},
		{"wrong API key", "GET", "/api/sandbox", "", map[string]string{"Authorization": "Bearer no"}, 401, ""},
		{"unknown sandbox", "GET", "/api/sandbox/00000000-0000-0000-0000-000000000000", "", key, 404, ""},
		{"delete unknown", "DELETE", "/api/sandbox/nosuch", "", key, 404, ""},
		{"resources without a build", "POST", "/api/sandbox", `{"cpu":2}`, key, 400, ""},
		{"snapshot and build", "POST", "/api/sandbox", `{"snapshot":"s","buildInfo":{"dockerfileContent":"FROM x"}}`, key, 400, ""},
		{"bad labels filter", "GET", "/api/sandbox?labels=nojson", "", key, 400, ""},
		{"toolbox without the key", "GET", "/toolbox/" + id + "/work-dir", "", nil, 401, "UNAUTHORIZED"},
		{"toolbox of a stopped sandbox", "GET", "/toolbox/" + stoppedID + "/work-dir", "", key, 502, "BAD_GATEWAY"},
		{"missing file", "GET", "/toolbox/" + id + "/files/info?path=nope", "", key, 404, "FILE_NOT_FOUND"},
		{"path outside the sandbox", "GET", "/toolbox/" + id + "/files/download?path=/etc/passwd", "", key, 400, "BAD_REQUEST"},
		{"directory without recursive", "DELETE", "/toolbox/" + id + "/files?path=.", "", key, 400, "BAD_REQUEST"},
		{"empty command", "POST", "/toolbox/" + id + "/process/execute", `{"command":""}`, key, 400, "INVALID_REQUEST_BODY"},
		{"unknown session", "POST", "/toolbox/" + id + "/process/session/nope/exec", `{"command":"true"}`, key, 404, "NOT_FOUND"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, tc.method, url+tc.path, tc.body, tc.header)
			if status != tc.status || body["statusCode"] != float64(tc.status) || body["message"] == "" {
				t.Errorf("got %d %v, want %d with statusCode and a message", status, body, tc.status)
			}
			if tc.code != "" && body["code"] != tc.code {
				t.Errorf("code %v, want %s", body["code"], tc.code)
			}
		})
	}
}

// TestExecuteSplitsLikeTheDaemon: process/execute runs argv split at
// spaces outside quotes, with no shell of its own, and kills at its timeout.
func TestExecuteSplitsLikeTheDaemon(t *testing.T) {
	_, url := newFake(t)
	key := map[string]string{"Authorization": "Bearer k"}
	_, sb := do(t, "POST", url+"/api/sandbox", `{"env":{"A":"from-create"}}`, key)
	base := url + "/toolbox/" + sb["id"].(string)
	tests := []struct {
		command string
		status  int
		result  string
		exit    float64
	}{
		{`echo $A`, 200, "$A\n", 0},
		{`sh -c 'echo "$A"; exit 3'`, 200, "from-create\n", 3},
		{`sh -c 'printf %s '"'"'q'"'"`, 200, "q", 0},
	}
	for _, tc := range tests {
		b, _ := json.Marshal(map[string]any{"command": tc.command})
		status, body := do(t, "POST", base+"/process/execute", string(b), key)
		if status != tc.status || body["result"] != tc.result || body["exitCode"] != tc.exit {
			t.Errorf("%s: got %d %v", tc.command, status, body)
		}
	}
	status, body := do(t, "POST", base+"/process/execute", `{"command":"sleep 10","timeout":1}`, key)
	if status != 408 || body["code"] != "REQUEST_TIMEOUT" {
		t.Errorf("a command past its timeout: %d %v", status, body)
	}
}

// TestFaultEndpoint: a fake running as its own process takes faults over
// HTTP.
func TestFaultEndpoint(t *testing.T) {
	fake, url := newFake(t)
	key := map[string]string{"Authorization": "Bearer k"}
	if status, _ := do(t, "POST", url+"/_fake/faults", `{"failCreates":{"count":1,"status":503}}`, nil); status != 204 {
		t.Fatalf("fault request: %d", status)
	}
	if status, _ := do(t, "POST", url+"/api/sandbox", `{}`, key); status != 503 {
		t.Fatalf("first create after the fault: %d", status)
	}
	if status, _ := do(t, "POST", url+"/_fake/faults", `{"failRequests":{"count":1,"status":429,"retryAfter":2}}`, nil); status != 204 {
		t.Fatal(status)
	}
	req, _ := http.NewRequest("GET", url+"/api/sandbox", nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("rate limited: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	do(t, "POST", url+"/_fake/faults", `{"stickCreating":1}`, nil)
	_, sb := do(t, "POST", url+"/api/sandbox", `{}`, key)
	if sb["state"] != "creating" || len(fake.Sandboxes()) != 1 {
		t.Fatalf("a stuck create: %v", sb)
	}
}
