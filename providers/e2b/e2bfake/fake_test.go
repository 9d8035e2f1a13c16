package e2bfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
)

func newFake(t *testing.T) (*e2bfake.Server, string) {
	t.Helper()
	fake, err := e2bfake.New(e2bfake.Options{APIKey: "k"})
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

// TestWireErrors: the error answers E2B's SDK and proxy give, which clients
// rely on (the SDK reads "code" from the body).
func TestWireErrors(t *testing.T) {
	_, url := newFake(t)
	key := map[string]string{"X-API-Key": "k"}
	_, sb := do(t, "POST", url+"/v2/sandboxes", `{"templateID":"base"}`, key)
	id, _ := sb["sandboxID"].(string)
	token, _ := sb["envdAccessToken"].(string)
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		header map[string]string
		status int
		code   float64
	}{
		{"no API key", "GET", "/v2/sandboxes", "", nil, 401, 401},
		{"wrong API key", "GET", "/v2/sandboxes", "", map[string]string{"X-API-Key": "no"}, 401, 401},
		{"unknown sandbox", "GET", "/sandboxes/nosuchsandbox", "", key, 404, 404},
		{"kill unknown", "DELETE", "/sandboxes/nosuchsandbox", "", key, 404, 404},
		{"zero timeout", "POST", "/v2/sandboxes", `{"templateID":"base","timeout":0}`, key, 400, 400},
		{"timeout over the plan", "POST", "/v2/sandboxes", `{"templateID":"base","timeout":999999}`, key, 400, 400},
		{"envd of an unknown sandbox", "GET", "/files?path=x", "", map[string]string{"E2b-Sandbox-Id": "nosuchsandbox"}, 502, 502},
		{"envd without the token", "GET", "/files?path=x", "", map[string]string{"E2b-Sandbox-Id": id}, 401, 401},
		{"missing file", "GET", "/files?path=x", "", map[string]string{"E2b-Sandbox-Id": id, "X-Access-Token": token}, 404, 404},
		{"path outside the sandbox", "GET", "/files?path=/etc/passwd", "", map[string]string{"E2b-Sandbox-Id": id, "X-Access-Token": token}, 400, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, tc.method, url+tc.path, tc.body, tc.header)
			if status != tc.status || body["code"] != tc.code || body["message"] == "" {
				t.Errorf("got %d %v, want %d with code %v and a message", status, body, tc.status, tc.code)
			}
		})
	}
}

// TestFaultEndpoint: a fake running as its own process takes faults over
// HTTP.
func TestFaultEndpoint(t *testing.T) {
	fake, url := newFake(t)
	key := map[string]string{"X-API-Key": "k"}
	if status, _ := do(t, "POST", url+"/_fake/faults", `{"failCreates":{"count":1,"status":503}}`, nil); status != 204 {
		t.Fatalf("fault request: %d", status)
	}
	if status, body := do(t, "POST", url+"/v2/sandboxes", `{"templateID":"base"}`, key); status != 503 || body["code"] != float64(503) {
		t.Fatalf("first create after the fault: %d %v", status, body)
	}
	if status, _ := do(t, "POST", url+"/v2/sandboxes", `{"templateID":"base"}`, key); status != 201 {
		t.Fatalf("second create: %d", status)
	}
	if n := len(fake.Sandboxes()); n != 1 {
		t.Fatalf("%d sandboxes, want 1", n)
	}
	if status, _ := do(t, "POST", url+"/_fake/faults", `{"failCreates":{"count":1,"status":500,"lost":true}}`, nil); status != 204 {
		t.Fatal(status)
	}
	if status, _ := do(t, "POST", url+"/v2/sandboxes", `{"templateID":"base"}`, key); status != 500 {
		t.Fatalf("lost create answered %d", status)
	}
	if n := len(fake.Sandboxes()); n != 2 {
		t.Fatalf("a lost create must still make the sandbox: %d running", n)
	}
}
