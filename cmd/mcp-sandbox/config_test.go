package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A setting chosen against a default blames the setting, not the default.
func TestConflictBlamesWhatWasSet(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // "" means accepted
	}{
		{"a lower cap lowers the default timeout", []string{"--max-command-timeout", "1s"}, ""},
		{"an explicit timeout above the cap", []string{"--command-timeout", "2m", "--max-command-timeout", "1m"},
			`invalid value "2m" for --command-timeout (MCP_SANDBOX_COMMAND_TIMEOUT): must not exceed --max-command-timeout (1m0s)`},
		{"more output than processes keep", []string{"--max-output-bytes", "128MiB"},
			`invalid value "128MiB" for --max-output-bytes (MCP_SANDBOX_MAX_OUTPUT_BYTES): --max-process-output (default 67108864 bytes) must be at least it`},
		{"a wait longer than the idle timeout", []string{"--wait-seconds", "2h"},
			`invalid value "2h" for --wait-seconds (MCP_SANDBOX_WAIT_SECONDS): --session-idle-timeout (default 30m0s) must be longer than it`},
	}
	for _, tc := range tests {
		cfg, err := loadConfig(append(tc.args, "--state-dir", t.TempDir()), noEnv, io.Discard)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && cfg.Limits.DefaultTimeout != time.Second:
			t.Errorf("%s: default timeout %v, want the cap, 1s", tc.name, cfg.Limits.DefaultTimeout)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%s: got %v\nwant %s...", tc.name, err, tc.want)
		}
	}
}

// A state dir the server could not use is refused at start-up, in one
// line naming --state-dir.
func TestUnusableStateDirIsRefusedAtStartup(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct{ name, dir, want string }{
		{"relative", "state", `invalid value "state" for --state-dir (MCP_SANDBOX_STATE_DIR): use an absolute path`},
		{"a file", file, `for --state-dir (MCP_SANDBOX_STATE_DIR): it is not a directory`},
	} {
		out, err := execBinary(t, nil, "--state-dir", tc.dir)
		if lines := strings.Split(strings.TrimSpace(out), "\n"); err == nil || len(lines) != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: want one line with %q, got %v:\n%s", tc.name, tc.want, err, out)
		}
	}
}

func TestUnwritableStateDirIsRefusedAtStartup(t *testing.T) {
	// Under the shared temporary directory, which every user may cross.
	state, err := os.MkdirTemp("", "mcp-sandbox-state")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(state, "local"), 0o755) // as a server that ran before left it
	os.Chmod(state, 0o555)
	t.Cleanup(func() { os.Chmod(state, 0o755); os.RemoveAll(state) })
	cmd := exec.Command(binaryForAnyone(t), "--state-dir", state)
	cmd.Env = []string{"HOME=/nonexistent"}
	cmd.Stdin = strings.NewReader("")
	if os.Geteuid() == 0 { // root writes anywhere: play an ordinary user
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	want := `for --state-dir (MCP_SANDBOX_STATE_DIR): this user cannot write there (permission denied)`
	if err == nil || !strings.Contains(string(out), want) || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("want one line with %q, got %v:\n%s", want, err, out)
	}
}

// binaryForAnyone is a copy of the server that another user may run.
func binaryForAnyone(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcp-sandbox-any")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "mcp-sandbox")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	return path
}

// A port in use is one start-up line, like every other start-up error.
func TestPortInUseIsOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	out, err := execBinary(t, []string{"MCP_SANDBOX_STATE_DIR=" + t.TempDir()}, "--http", addr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := "mcp-sandbox: cannot listen on " + addr + ": "
	if err == nil || len(lines) != 1 || !strings.HasPrefix(lines[0], want) || !strings.Contains(lines[0], "address already in use") {
		t.Fatalf("want one line starting %q, got %v:\n%s", want, err, out)
	}
}

// A server whose stderr was closed (its log collector died) keeps serving.
func TestClosedStderrDoesNotKillTheServer(t *testing.T) {
	state := t.TempDir()
	sock := filepath.Join(state, "s.sock")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // every write to w now meets a broken pipe
	t.Cleanup(func() { w.Close() })
	cmd := exec.Command(binary, "--http", "unix:"+sock, "--auth", "none", "--log-level", "debug")
	cmd.Env = []string{"HOME=" + t.TempDir(), "MCP_SANDBOX_STATE_DIR=" + state}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("the server ended with its stderr closed: %v", waitErr)
		default:
		}
		resp, err := c.Get("http://localhost/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			t.Fatalf("/healthz: %s %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not answer within 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Debug logging writes a line per request: serve a few more.
	for range 3 {
		resp, err := c.Get("http://localhost/healthz")
		if err != nil {
			t.Fatalf("after serving once: %v", err)
		}
		resp.Body.Close()
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGPIPE {
			t.Fatalf("killed by SIGPIPE: %v", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGINT")
	}
}
