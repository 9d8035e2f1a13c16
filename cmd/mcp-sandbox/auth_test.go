package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// otherUser is the second account .ci/run creates, to play another local
// user of a shared machine.
const otherUser = "mcpother"

// asOtherUser returns the uid and gid of otherUser, skipping (failing in CI)
// when the test cannot switch users.
func asOtherUser(t *testing.T) *syscall.Credential {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if os.Getuid() != 0 && !ci {
		t.Skip("switching to another user needs root")
	}
	u, err := user.Lookup(otherUser)
	if err != nil || os.Getuid() != 0 {
		if ci {
			t.Fatalf("CI=true needs root and the user %s (.ci/run creates it): %v", otherUser, err)
		}
		t.Skipf("no user %s (useradd -m %s): %v", otherUser, otherUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// probeResult is what the probe client saw: whether it could read the
// token file, and the status of initialize without and with what it read.
type probeResult struct {
	ReadErr        string
	NoToken        int
	WithReadToken  int
	DialErr        string
	InitializeBody string
}

// TestProbeClientHelper is not a test: the auth tests run this test binary
// as another user to play a local attacker (MCP_SANDBOX_PROBE_URL set).
func TestProbeClientHelper(t *testing.T) {
	url := os.Getenv("MCP_SANDBOX_PROBE_URL")
	if url == "" {
		t.Skip("helper process for the auth tests")
	}
	socket, tokenFile := os.Getenv("MCP_SANDBOX_PROBE_SOCKET"), os.Getenv("MCP_SANDBOX_PROBE_TOKEN_FILE")
	hc := &http.Client{Timeout: 10 * time.Second}
	if socket != "" {
		hc.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}
	}
	var res probeResult
	initialize := func(token string) int {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(initializeJSON))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			res.DialErr = err.Error()
			return 0
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res.InitializeBody = string(body)
		return resp.StatusCode
	}
	res.NoToken = initialize("")
	if data, err := os.ReadFile(tokenFile); err != nil {
		res.ReadErr = err.Error()
	} else {
		res.WithReadToken = initialize(strings.TrimSpace(string(data)))
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// probe runs the probe client, as cred's user when cred is set. The test
// binary is copied where that user can run it.
func probe(t *testing.T, cred *syscall.Credential, url, socket, tokenFile string) probeResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := worldReadableDir(t)
	bin := filepath.Join(dir, "probe.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestProbeClientHelper$")
	cmd.Dir = dir
	cmd.Env = []string{"MCP_SANDBOX_PROBE_URL=" + url, "MCP_SANDBOX_PROBE_SOCKET=" + socket, "MCP_SANDBOX_PROBE_TOKEN_FILE=" + tokenFile, "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.Output()
	var res probeResult
	line, _, _ := strings.Cut(string(out), "\n")
	if jerr := json.Unmarshal([]byte(line), &res); jerr != nil {
		t.Fatalf("probe printed no result (err %v): %s", err, out)
	}
	return res
}

// worldReadableDir is a temporary directory every user may enter, so that
// only the modes of the files in it protect them.
func worldReadableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcp-sandbox-auth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Another local user reaches the loopback port but cannot read the
// generated token, so it is refused; the server's own user gets in with
// it. With --auth none (the old default) the same user gets a session.
func TestHTTPLoopbackRefusesAnotherUserWithoutTheToken(t *testing.T) {
	other := asOtherUser(t)
	state := worldReadableDir(t)
	url := startBinary(t, []string{"MCP_SANDBOX_STATE_DIR=" + state}, "--http", "127.0.0.1:0")
	tokenFile := filepath.Join(state, "http-token")
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated token file: %v, mode %v; want 0600", err, fi.Mode())
	}

	attacker := probe(t, other, url, "", tokenFile)
	if attacker.NoToken != http.StatusUnauthorized || !strings.Contains(attacker.ReadErr, "permission denied") || attacker.WithReadToken != 0 {
		t.Fatalf("another user: %+v; want 401 and the token file unreadable", attacker)
	}
	owner := probe(t, nil, url, "", tokenFile)
	if owner.NoToken != http.StatusUnauthorized || owner.ReadErr != "" || owner.WithReadToken != http.StatusOK {
		t.Fatalf("the server's user: %+v; want 401 without the token, 200 with it", owner)
	}

	open := startBinary(t, []string{"MCP_SANDBOX_STATE_DIR=" + worldReadableDir(t)}, "--http", "127.0.0.1:0", "--auth", "none")
	if res := probe(t, other, open, "", tokenFile); res.NoToken != http.StatusOK {
		t.Fatalf("--auth none: another user got %+v, want a session (200)", res)
	}
}

// A Unix socket is created 0600: another user cannot even connect, even
// with --auth none.
func TestHTTPUnixSocketOnlyForItsUser(t *testing.T) {
	other := asOtherUser(t)
	dir := worldReadableDir(t)
	socket := filepath.Join(dir, "mcp.sock")
	url := startBinary(t, []string{"MCP_SANDBOX_STATE_DIR=" + worldReadableDir(t)}, "--http", "unix:"+socket, "--auth", "none")
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket: %v, mode %v; want a 0600 socket", err, fi.Mode())
	}
	if res := probe(t, other, url, socket, ""); res.NoToken != 0 || !strings.Contains(res.DialErr, "permission denied") {
		t.Fatalf("another user on the socket: %+v; want the connection refused", res)
	}
	if res := probe(t, nil, url, socket, ""); res.NoToken != http.StatusOK {
		t.Fatalf("the server's user on the socket: %+v; want 200", res)
	}
}

// The generated token survives a restart (clients configured once keep
// working), the operator is told where it is and given a line to paste,
// and the token itself is never printed.
func TestHTTPGeneratedTokenIsReusedAndAnnounced(t *testing.T) {
	state := t.TempDir()
	var tokens []string
	for range 2 {
		cmd := exec.Command(binary, "--http", "127.0.0.1:0")
		cmd.Env = []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir()}
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "claude mcp add") {
				break
			}
		}
		cmd.Process.Signal(os.Interrupt)
		go io.Copy(io.Discard, stderr)
		cmd.Wait()
		data, err := os.ReadFile(filepath.Join(state, "http-token"))
		if err != nil {
			t.Fatal(err)
		}
		token := strings.TrimSpace(string(data))
		tokens = append(tokens, token)
		want := `--header "Authorization: Bearer $(cat ` + filepath.Join(state, "http-token") + `)"`
		if !strings.Contains(out.String(), want) || strings.Contains(out.String(), token) {
			t.Fatalf("start-up output should give the client line %s and not the token:\n%s", want, out.String())
		}
	}
	if len(tokens[0]) < 32 || tokens[0] != tokens[1] {
		t.Fatalf("tokens across a restart: %q, want the same random token", tokens)
	}
	// A token file others could read may already be known: refused.
	os.Chmod(filepath.Join(state, "http-token"), 0o644)
	cmd := exec.Command(binary, "--http", "127.0.0.1:0")
	cmd.Env = []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "remove it and restart") {
		t.Fatalf("a 0644 token file: err %v, output:\n%s", err, out)
	}
}
