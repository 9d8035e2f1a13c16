package e2b

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, p *Provider, opts providers.CreateOptions) providers.Sandbox {
	t.Helper()
	sb, err := p.Create(ctxT(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	return sb
}

func env(kv ...string) providers.Config {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return providers.Config{Getenv: func(k string) string { return m[k] }}
}

func TestFactoryWithoutKey(t *testing.T) {
	_, err := providers.Open(context.Background(), Name, env(EnvAPIURL, "http://127.0.0.1:1"))
	if err == nil || err.Error() != MissingKeyMessage {
		t.Fatalf("got %v, want exactly %q", err, MissingKeyMessage)
	}
}

func TestFactorySettings(t *testing.T) {
	tests := []struct {
		name    string
		cfg     providers.Config
		apiURL  string
		envdURL string // for sandbox "abc", with no domain in the API's answer
		wantErr string
	}{
		{"defaults", env(EnvAPIKey, "k"), "https://api.e2b.app", "https://sandbox.e2b.app", ""},
		{"E2B's other domain", env(EnvAPIKey, "k", EnvDomain, "e2b.dev"), "https://api.e2b.dev", "https://sandbox.e2b.dev", ""},
		{"self-hosted domain", env(EnvAPIKey, "k", EnvDomain, "sb.example.com"), "https://api.sb.example.com", "https://49983-abc.sb.example.com", ""},
		{"E2B_API_URL wins", env(EnvAPIKey, "k", EnvDomain, "sb.example.com", EnvAPIURL, "http://127.0.0.1:3000/"), "http://127.0.0.1:3000", "https://49983-abc.sb.example.com", ""},
		{"E2B_SANDBOX_URL", env(EnvAPIKey, "k", EnvSandboxURL, "http://127.0.0.1:5000"), "https://api.e2b.app", "http://127.0.0.1:5000", ""},
		{"bad timeout", env(EnvAPIKey, "k", EnvTimeout, "soon"), "", "", EnvTimeout},
		{"timeout too short", env(EnvAPIKey, "k", EnvTimeout, "10s"), "", "", "from 1m to 24h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pp, err := providers.Open(context.Background(), Name, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var d providers.Provider
			pp.As(&d)
			p := d.(*Provider)
			if p.apiURL != tc.apiURL {
				t.Errorf("API URL %q, want %q", p.apiURL, tc.apiURL)
			}
			if got := p.envdURL("abc", nil); got != tc.envdURL {
				t.Errorf("envd URL %q, want %q", got, tc.envdURL)
			}
		})
	}
	// The domain in the API's answer is the one envd is reached on.
	p, _ := New(Options{APIKey: "k"})
	if d := "eu.sb.example.com"; p.envdURL("abc", &d) != "https://49983-abc.eu.sb.example.com" {
		t.Errorf("envd URL ignores the sandbox's domain: %s", p.envdURL("abc", &d))
	}
}

func TestWrongAPIKey(t *testing.T) {
	_, url := startFake(t)
	o := fakeOptions(url)
	o.APIKey = "wrong"
	_, err := newDriver(t, o).Create(ctxT(t), providers.CreateOptions{})
	if !errors.Is(err, providers.ErrDenied) || !strings.Contains(err.Error(), EnvAPIKey) {
		t.Fatalf("got %v, want ErrDenied naming %s", err, EnvAPIKey)
	}
}

func TestCreateRetriesAndLeavesNothing(t *testing.T) {
	tests := []struct {
		name        string
		fail        int
		lost        bool
		wantErr     bool
		wantCreates int
		wantLeft    int
	}{
		{name: "503 twice, then created", fail: 2, wantCreates: 3, wantLeft: 1},
		{name: "503 every time", fail: 100, wantErr: true, wantCreates: 3, wantLeft: 0},
		{name: "created but the answer lost, then created", fail: 1, lost: true, wantCreates: 2, wantLeft: 1},
		{name: "every answer lost", fail: 100, lost: true, wantErr: true, wantCreates: 3, wantLeft: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t)
			o := fakeOptions(url)
			o.Retries = 2
			p := newDriver(t, o)
			if tc.lost {
				fake.LoseCreateResponses(tc.fail, 500)
			} else {
				fake.FailCreates(tc.fail, 503)
			}
			sb, err := p.Create(ctxT(t), providers.CreateOptions{Name: "retry"})
			if tc.wantErr {
				if !errors.Is(err, providers.ErrUnavailable) {
					t.Fatalf("got %v, want ErrUnavailable", err)
				}
			} else if err != nil {
				t.Fatalf("create failed: %v", err)
			}
			if n := fake.CreateRequests(); n != tc.wantCreates {
				t.Errorf("%d create requests, want %d", n, tc.wantCreates)
			}
			left := fake.Sandboxes()
			if len(left) != tc.wantLeft {
				t.Fatalf("%d sandboxes running, want %d: %+v", len(left), tc.wantLeft, left)
			}
			if tc.wantLeft == 1 && left[0].ID != sb.ID {
				t.Errorf("the sandbox running is %s, not the one returned (%s)", left[0].ID, sb.ID)
			}
		})
	}
}

func TestStreamCutMidCommand(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	fake.CutStreams(1, 6)
	var out bytes.Buffer
	start := time.Now()
	_, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo $$ > cut.pid; echo hello; sleep 30; echo late", Stdout: &out})
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "broke before the command ended") {
		t.Fatalf("got %v, want ErrUnavailable saying the stream broke", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the broken stream was noticed after %v", took)
	}
	if out.String() != "hello\n" {
		t.Errorf("output before the cut: %q", out.String())
	}
	// The command the caller stopped listening to is not left running.
	rc, _, err := p.ReadFile(ctxT(t), sb.ID, "cut.pid")
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := io.ReadAll(rc)
	rc.Close()
	if !diesSoon(string(pid)) {
		t.Fatalf("the command (pid %s) is still running after its stream broke", pid)
	}
}

// diesSoon reports whether the host process pid is gone (or a zombie)
// within 5s: the fake runs commands on this machine.
func diesSoon(pid string) bool {
	status := "/proc/" + strings.TrimSpace(pid) + "/status"
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(status)
		if err != nil || strings.Contains(string(b), "State:\tZ") {
			return true
		}
	}
	return false
}

func TestDestroyKillsEverything(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{Labels: map[string]string{"session": "s1"}})
	var out bytes.Buffer
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "sleep 1000 & echo $!", Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	dir := fake.Sandboxes()[0].Dir
	if err := p.Destroy(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
	if left := fake.Sandboxes(); len(left) != 0 {
		t.Fatalf("after Destroy the fake still runs %+v", left)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sandbox's directory %s is still there: %v", dir, err)
	}
	if !diesSoon(out.String()) {
		t.Errorf("a background process (pid %s) outlived its sandbox", strings.TrimSpace(out.String()))
	}
}

func TestSandboxKilledElsewhere(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	if err := newDriver(t, fakeOptions(url)).Destroy(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
	// p still holds the connection details; envd's proxy now answers 502.
	_, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "true"})
	if !errors.Is(err, providers.ErrNotFound) || !strings.Contains(err.Error(), sb.ID) {
		t.Errorf("Exec: got %v, want ErrNotFound naming the sandbox", err)
	}
	err = p.WriteFile(ctxT(t), sb.ID, "x", []byte("x"), 0)
	if !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("WriteFile: got %v, want ErrNotFound", err)
	}
}

// TestMetadataLetsARestartedServerReap: what a session owns is found again
// by label from a driver that did not create it.
func TestMetadataLetsARestartedServerReap(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	mine := create(t, p, providers.CreateOptions{Name: "mine", Labels: map[string]string{"session": "s1"}})
	create(t, p, providers.CreateOptions{Name: "other", Labels: map[string]string{"session": "s2"}})
	meta := map[string]map[string]string{}
	for _, s := range fake.Sandboxes() {
		meta[s.ID] = s.Metadata
	}
	if m := meta[mine.ID]; m["session"] != "s1" || m[metaServer] != "test-server" || m[metaName] != "mine" {
		t.Errorf("E2B metadata of the sandbox: %v", m)
	}
	restarted := newDriver(t, fakeOptions(url))
	found, err := restarted.List(ctxT(t), map[string]string{"session": "s1"})
	if err != nil || len(found) != 1 || found[0].ID != mine.ID || found[0].Name != "mine" {
		t.Fatalf("List(session=s1) = %+v, %v", found, err)
	}
	if _, ok := found[0].Labels[metaServer]; ok || found[0].Labels["session"] != "s1" {
		t.Errorf("labels %v: want the caller's labels only", found[0].Labels)
	}
	if err := restarted.Destroy(ctxT(t), mine.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Sandboxes()); n != 1 {
		t.Errorf("%d sandboxes left, want the other session's only", n)
	}
	_, err = p.Create(ctxT(t), providers.CreateOptions{Labels: map[string]string{metaServer: "x"}})
	if !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("a label with the reserved prefix: got %v", err)
	}
}

// TestTimeoutExtendedWhileInUse: a sandbox whose idle timeout is shorter
// than the work done in it is not killed under it.
func TestTimeoutExtendedWhileInUse(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.Timeout = 2 * time.Second
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{})
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "sleep 4; echo done"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("a command longer than the sandbox timeout: %+v, %v", res, err)
	}
	if _, err := p.Get(ctxT(t), sb.ID); err != nil {
		t.Fatalf("the sandbox died while in use: %v", err)
	}
	// Left alone, it expires.
	time.Sleep(3 * time.Second)
	if n := len(fake.Sandboxes()); n != 0 {
		t.Errorf("an idle sandbox outlived its timeout (%d running)", n)
	}
}

// TestIdempotentCallsRetry: reads, kills and timeouts survive a few 5xx and
// slow answers; a lost answer to a kill is not reported as "not found".
func TestIdempotentCallsRetry(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.Retries = 3
	o.RequestTimeout = 300 * time.Millisecond
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{Name: "r"})

	fake.FailRequests(2, 502)
	if got, err := p.Get(ctxT(t), sb.ID); err != nil || got.Name != "r" {
		t.Fatalf("Get after two 502s: %+v, %v", got, err)
	}
	fake.FailRequests(2, 503)
	if _, err := p.List(ctxT(t), nil); err != nil {
		t.Fatalf("List after two 503s: %v", err)
	}

	fake.SetLatency(time.Second)
	start := time.Now()
	_, err := p.Get(ctxT(t), sb.ID)
	if !errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("Get from an API slower than the request timeout: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("gave up after %v", took)
	}
	fake.SetLatency(0)

	fake.FailRequests(1, 504)
	if err := p.Destroy(ctxT(t), sb.ID); err != nil {
		t.Fatalf("Destroy after a 504: %v", err)
	}
	if n := len(fake.Sandboxes()); n != 0 {
		t.Errorf("%d sandboxes left", n)
	}
	fake.FailRequests(5, 500)
	if _, err := p.Get(ctxT(t), sb.ID); !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "500") {
		t.Errorf("Get while the API keeps failing: %v, want ErrUnavailable naming the status", err)
	}
}

// TestQuietCommandWithKeepalives: keepalive events on a quiet stream are
// not output.
func TestQuietCommandWithKeepalives(t *testing.T) {
	_, url := startFake(t) // keepalive every 100ms
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	var out, errOut bytes.Buffer
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "sleep 0.6; echo after", Stdout: &out, Stderr: &errOut})
	if err != nil || res.ExitCode != 0 || out.String() != "after\n" || errOut.Len() != 0 {
		t.Fatalf("got %+v, %v, stdout %q, stderr %q", res, err, out.String(), errOut.String())
	}
}

// TestReap: a restarted server kills its own sandboxes whose owner is gone,
// and leaves live, unknown and kept ones (E2B's timeout ends those) and
// other servers' alone.
func TestReap(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	o := fakeOptions(url)
	o.ServerID = "another-server"
	other := newDriver(t, o)
	made := func(p *Provider, labels map[string]string) string {
		return create(t, p, providers.CreateOptions{Labels: labels}).ID
	}
	dead := made(p, map[string]string{providers.LabelSession: "dead"})
	live := made(p, map[string]string{providers.LabelSession: "live"})
	unknown := made(p, map[string]string{providers.LabelSession: "elsewhere"})
	kept := made(p, map[string]string{providers.LabelSession: "dead", providers.LabelKeep: "true"})
	foreign := made(other, map[string]string{providers.LabelSession: "dead"})
	owner := func(label string) providers.Liveness {
		return map[string]providers.Liveness{"live": providers.OwnerLive, "dead": providers.OwnerDead}[label]
	}
	removed, err := newDriver(t, fakeOptions(url)).Reap(ctxT(t), owner)
	if err != nil || len(removed) != 1 || removed[0] != dead {
		t.Fatalf("Reap = %v, %v; want just %s", removed, err, dead)
	}
	left := map[string]bool{}
	for _, s := range fake.Sandboxes() {
		left[s.ID] = true
	}
	for _, id := range []string{live, unknown, kept, foreign} {
		if !left[id] {
			t.Errorf("%s was reaped", id)
		}
	}
	if left[dead] {
		t.Errorf("the dead owner's sandbox %s is still running", dead)
	}
}

// TestCutUploadLeavesTheOldFile: an upload dropped half way (envd keeps
// what it read) fails, and leaves the old file whole and no temp file.
func TestCutUploadLeavesTheOldFile(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	old := []byte("old content\n")
	if err := p.WriteFile(ctxT(t), sb.ID, "d/f.txt", old, 0); err != nil {
		t.Fatal(err)
	}
	fake.CutUploads(1, 64<<10)
	if err := p.WriteFile(ctxT(t), sb.ID, "d/f.txt", bytes.Repeat([]byte("new "), 1<<18), 0); err == nil {
		t.Fatal("a write whose upload was cut off succeeded")
	}
	rc, _, err := p.ReadFile(ctxT(t), sb.ID, "d/f.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, old) {
		t.Errorf("after a cut upload the file holds %d bytes, want the old %d", len(got), len(old))
	}
	ents, _, err := p.ListFiles(ctxT(t), sb.ID, "d", 1, 0)
	if err != nil || len(ents) != 1 || ents[0].Path != "f.txt" {
		t.Errorf("after a cut upload the directory holds %+v (%v), want f.txt alone", ents, err)
	}
}
