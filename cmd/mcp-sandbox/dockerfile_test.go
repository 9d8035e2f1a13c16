package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The Dockerfile builds an image of the HTTP server, as the README says to
// build it, that runs as a user other than root, becomes healthy through
// its /healthz check and lists its tools to a client with the token.
func TestDockerfileBuildsAServingImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a static binary and an image")
	}
	busybox := staticBusybox(t)
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no Docker engine answers (run .ci/setup-docker.sh): %v", err)
		}
		t.Skip("no Docker engine answers (run .ci/setup-docker.sh)")
	}

	// The build context as the README's steps leave it, with the
	// checkout's Dockerfile and .dockerignore.
	ctxDir := t.TempDir()
	for _, name := range []string{"Dockerfile", ".dockerignore"} {
		data, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(ctxDir, name), data, 0o644)
	}
	os.WriteFile(filepath.Join(ctxDir, "README.md"), []byte("left out by .dockerignore"), 0o644)
	os.Mkdir(filepath.Join(ctxDir, "bin"), 0o755)
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(ctxDir, "bin", "mcp-sandbox"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctxDir, "bin", "busybox"), data, 0o755)

	tag := fmt.Sprintf("mcp-sandbox-dockerfile-test:%d", time.Now().UnixNano())
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "image", "rm", "-f", tag).Run() })

	out, err := exec.Command("docker", "run", "--rm", "--entrypoint", "/bin/busybox", tag, "ls", "/").CombinedOutput()
	if err != nil || strings.Contains(string(out), "README.md") {
		t.Errorf("the image holds more than the binary and busybox (%v): %s", err, out)
	}

	const token = "dockerfile-test-token-0123456789"
	out, err = exec.Command("docker", "run", "-d", "-p", "127.0.0.1::8080", "-e", "MCP_SANDBOX_AUTH_TOKEN="+token,
		"--health-interval", "1s", "--health-start-period", "1s", tag).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command("docker", "logs", id).CombinedOutput()
			t.Logf("container logs:\n%s", logs)
		}
		exec.Command("docker", "rm", "-f", id).Run()
	})
	inspect := func(format string) string {
		out, _ := exec.Command("docker", "inspect", "-f", format, id).Output()
		return strings.TrimSpace(string(out))
	}
	if user := inspect("{{.Config.User}}"); user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("the server runs as %q; it must not run as root", user)
	}
	deadline := time.Now().Add(30 * time.Second)
	for inspect("{{.State.Health.Status}}") != "healthy" {
		if time.Now().After(deadline) {
			t.Fatalf("not healthy within 30s: %s", inspect("{{json .State.Health}}"))
		}
		time.Sleep(250 * time.Millisecond)
	}
	port := inspect(`{{(index (index .NetworkSettings.Ports "8080/tcp") 0).HostPort}}`)
	url := "http://127.0.0.1:" + port

	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	post := func(session, body string, auth bool) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, url+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if auth {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := post("", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, false); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %s, want 401", resp.Status)
	}
	resp = post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`, true)
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || session == "" {
		t.Fatalf("initialize: %s, session %q", resp.Status, session)
	}
	post(session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, true)
	resp = post(session, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, true)
	var list struct {
		Result struct {
			Tools []struct{ Name string }
		}
	}
	if err := json.NewDecoder(responseData(t, resp)).Decode(&list); err != nil || len(list.Result.Tools) == 0 {
		t.Fatalf("tools/list: %s, %v %+v", resp.Status, err, list)
	}
	if list.Result.Tools[0].Name == "" {
		t.Errorf("tools/list: unnamed tool in %+v", list)
	}
}

// staticBusybox is a statically linked busybox to copy into the image.
func staticBusybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but no static busybox (apt-get install busybox-static; .ci/setup-docker.sh does)")
	}
	t.Skip("no static busybox (apt-get install busybox-static)")
	return ""
}

// isStatic: an ELF executable without a program interpreter runs FROM
// scratch.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// responseData is the JSON of a response sent as application/json or as one
// server-sent event.
func responseData(t *testing.T, resp *http.Response) io.Reader {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return bytes.NewReader(body)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if data, ok := strings.CutPrefix(line, "data:"); ok {
			return strings.NewReader(data)
		}
	}
	t.Fatalf("no data in the event stream: %q", body)
	return nil
}
