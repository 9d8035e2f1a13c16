package daytona

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

func env(kv ...string) providers.Config {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return providers.Config{Getenv: func(k string) string { return m[k] }, ServerID: "test-server"}
}

func TestFactoryWithoutKey(t *testing.T) {
	_, err := providers.Open(context.Background(), Name, env(EnvAPIURL, "http://127.0.0.1:1/api"))
	if err == nil || err.Error() != MissingKeyMessage {
		t.Fatalf("got %v, want exactly %q", err, MissingKeyMessage)
	}
}

func TestFactorySettings(t *testing.T) {
	tests := []struct {
		name    string
		cfg     providers.Config
		check   func(o Options) bool
		wantErr string
	}{
		{"defaults", env(EnvAPIKey, "k"), func(o Options) bool {
			return o.APIURL == DefaultAPIURL && o.Target == "eu" && !o.DisableAutoStop && !o.DeleteOnClose && o.Expiry == DefaultExpiry
		}, ""},
		{"everything set", env(EnvAPIKey, "k", EnvAPIURL, "http://x/api/", EnvTarget, "us", EnvDisableAutoStop, "true", EnvDeleteOnClose, "1", EnvExpiry, "2h"), func(o Options) bool {
			return o.APIURL == "http://x/api/" && o.Target == "us" && o.DisableAutoStop && o.DeleteOnClose && o.Expiry == 2*time.Hour
		}, ""},
		{"bad boolean", env(EnvAPIKey, "k", EnvDeleteOnClose, "maybe"), nil, `invalid value "maybe" for DAYTONA_DELETE_ON_CLOSE (from the environment): use true or false`},
		{"bad auto-stop boolean", env(EnvAPIKey, "k", EnvDisableAutoStop, "on"), nil, "DAYTONA_DISABLE_AUTO_STOP"},
		{"bad expiry", env(EnvAPIKey, "k", EnvExpiry, "soon"), nil, EnvExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := OptionsFromConfig(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(p.o) {
				t.Errorf("options %+v", p.o)
			}
			if strings.HasSuffix(p.apiURL, "/") {
				t.Errorf("API URL %q keeps a trailing slash", p.apiURL)
			}
		})
	}
}

func TestWrongAPIKey(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.APIKey = "wrong"
	_, err := newDriver(t, o).Create(ctxT(t), providers.CreateOptions{})
	if !errors.Is(err, providers.ErrDenied) || !strings.Contains(err.Error(), "check "+EnvAPIKey) || strings.Contains(err.Error(), "temporar") {
		t.Fatalf("got %v, want ErrDenied saying to check %s", err, EnvAPIKey)
	}
	if n := fake.CreateRequests(); n != 0 {
		t.Errorf("a refused key was retried: %d creates reached the API", n)
	}
}

// TestCreateSettingsReachDaytona: target, auto-stop, env, labels and the
// snapshot or image go into the create request.
func TestCreateSettingsReachDaytona(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.Target, o.DisableAutoStop, o.AllowedImages = "us", true, "my-*, image:python:*"
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{Name: "n", Image: "my-snapshot", Env: map[string]string{"A": "1"}, Labels: map[string]string{"session": "s1"}})
	got := fake.Sandboxes()[0]
	if got.Target != "us" || got.AutoStop != 0 || got.Env["A"] != "1" || got.Snapshot != "my-snapshot" {
		t.Errorf("fake saw %+v", got)
	}
	if got.Labels["session"] != "s1" || got.Labels[labelServer] != "test-server" || got.Labels[labelName] != "n" || got.Labels[labelExpires] == "" {
		t.Errorf("labels %v", got.Labels)
	}
	if sb.Image != "my-snapshot" || sb.Labels[labelServer] != "" {
		t.Errorf("returned %+v: want the snapshot and the caller's labels only", sb)
	}
	o.DisableAutoStop = false
	create(t, newDriver(t, o), providers.CreateOptions{Image: "image:python:3.12"})
	if got := fake.Sandboxes()[1]; got.Snapshot != "python:3.12" || got.AutoStop != 15 {
		t.Errorf("from an image: %+v", got)
	}
	o.AllowedImages = "*"
	p = newDriver(t, o)
	for _, opts := range []providers.CreateOptions{{Image: "image:"}, {Labels: map[string]string{labelServer: "x"}}} {
		if _, err := p.Create(ctxT(t), opts); !errors.Is(err, providers.ErrInvalidArgument) {
			t.Errorf("Create(%+v): %v, want ErrInvalidArgument", opts, err)
		}
	}
}

func TestCreateRetriesAndLeavesNothing(t *testing.T) {
	tests := []struct {
		name        string
		fail        int
		status      int
		lost        bool
		wantErr     error
		wantCreates int
		wantLeft    int
	}{
		{name: "503 twice, then created", fail: 2, status: 503, wantCreates: 3, wantLeft: 1},
		{name: "503 every time", fail: 100, status: 503, wantErr: providers.ErrUnavailable, wantCreates: 3, wantLeft: 0},
		{name: "created but the answer lost, then created", fail: 1, status: 500, lost: true, wantCreates: 2, wantLeft: 1},
		{name: "every answer lost", fail: 100, status: 502, lost: true, wantErr: providers.ErrUnavailable, wantCreates: 3, wantLeft: 0},
		{name: "a refusal is not retried", fail: 100, status: 400, wantErr: providers.ErrInvalidArgument, wantCreates: 1, wantLeft: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t)
			o := fakeOptions(url)
			o.Retries = 2
			p := newDriver(t, o)
			if tc.lost {
				fake.LoseCreateResponses(tc.fail, tc.status)
			} else {
				fake.FailCreates(tc.fail, tc.status)
			}
			sb, err := p.Create(ctxT(t), providers.CreateOptions{Name: "retry"})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				if errors.Is(err, providers.ErrInvalidArgument) && strings.Contains(err.Error(), "again") {
					t.Errorf("a permanent error reads as passing: %v", err)
				}
			} else if err != nil {
				t.Fatalf("create failed: %v", err)
			}
			if n := fake.CreateRequests(); n != tc.wantCreates {
				t.Errorf("%d create requests, want %d", n, tc.wantCreates)
			}
			left := fake.Sandboxes()
			if len(left) != tc.wantLeft {
				t.Fatalf("%d sandboxes left, want %d: %+v", len(left), tc.wantLeft, left)
			}
			if tc.wantLeft == 1 && left[0].ID != sb.ID {
				t.Errorf("the sandbox left is %s, not the one returned (%s)", left[0].ID, sb.ID)
			}
		})
	}
}

// TestStuckCreationIsDeleted: a sandbox that never leaves "creating" ends
// the create with a timeout and is deleted.
func TestStuckCreationIsDeleted(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.StartTimeout = 700 * time.Millisecond
	p := newDriver(t, o)
	fake.StickCreating(1)
	start := time.Now()
	_, err := p.Create(ctxT(t), providers.CreateOptions{})
	if !errors.Is(err, providers.ErrTimeout) || !strings.Contains(err.Error(), "creating") {
		t.Fatalf("got %v, want ErrTimeout naming the state", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %v", took)
	}
	if left := fake.Sandboxes(); len(left) != 0 {
		t.Errorf("the stuck sandbox was left: %+v", left)
	}
}

// TestRateLimitHonoursRetryAfter: a 429 is retried after the server's
// delay, not before.
func TestRateLimitHonoursRetryAfter(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{Name: "r"})
	fake.FailRequests(1, 429, 1)
	start := time.Now()
	if _, err := p.Get(ctxT(t), sb.ID); err != nil {
		t.Fatalf("Get after a 429: %v", err)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("retried after %v, before the 1s the server asked for", took)
	}
	// A delay past the retry budget is not waited out: the error says
	// when to come back.
	fake.FailRequests(1, 429, 60)
	start = time.Now()
	_, err := p.Get(ctxT(t), sb.ID)
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "retry after 1m0s") {
		t.Errorf("got %v, want ErrUnavailable saying when to retry", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("waited %v for a delay past the budget", took)
	}
}

// TestIdempotentCallsRetry: reads and deletes survive a few 5xx; slow and
// failing APIs end the call within the budget, with the status named.
func TestIdempotentCallsRetry(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.RequestTimeout = 300 * time.Millisecond
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{Name: "r"})

	fake.FailRequests(2, 502, 0)
	if got, err := p.Get(ctxT(t), sb.ID); err != nil || got.Name != "r" {
		t.Fatalf("Get after two 502s: %+v, %v", got, err)
	}
	fake.FailRequests(2, 503, 0)
	if _, err := p.List(ctxT(t), nil); err != nil {
		t.Fatalf("List after two 503s: %v", err)
	}
	fake.SetLatency(time.Second)
	start := time.Now()
	_, err := p.List(ctxT(t), nil)
	if !errors.Is(err, providers.ErrTimeout) {
		t.Errorf("List from an API slower than the request timeout: %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %v", took)
	}
	fake.SetLatency(0)
	fake.FailRequests(100, 500, 0)
	before := fake.APIRequests()
	if _, err := p.List(ctxT(t), nil); !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "500") {
		t.Errorf("List while the API keeps failing: %v, want ErrUnavailable naming the status", err)
	}
	if n := fake.APIRequests() - before; n != 4 {
		t.Errorf("%d requests for one List, want 4 (3 retries)", n)
	}
	fake.FailRequests(0, 0, 0)
	if err := p.Destroy(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableFailsFast(t *testing.T) {
	p := newDriver(t, fakeOptions("http://127.0.0.1:1/api"))
	start := time.Now()
	_, err := p.Create(ctxT(t), providers.CreateOptions{})
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), EnvAPIURL) {
		t.Errorf("got %v, want ErrUnavailable naming %s", err, EnvAPIURL)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("an unreachable Daytona took %v to fail", took)
	}
}

func TestCutDownload(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	data := bytes.Repeat([]byte("0123456789"), 100_000)
	if err := p.WriteFile(ctxT(t), sb.ID, "big", data, 0); err != nil {
		t.Fatal(err)
	}
	fake.CutDownloads(1, 4096)
	rc, _, err := p.ReadFile(ctxT(t), sb.ID, "big")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "download broke") {
		t.Fatalf("reading a cut download: %v, want ErrUnavailable saying it broke", err)
	}
	rc, _, err = p.ReadFile(ctxT(t), sb.ID, "big")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the next read: %d bytes, %v", len(got), err)
	}
}

// TestLogStreamCut: a command whose output stream breaks is reported as
// such and not left running.
func TestLogStreamCut(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	fake.CutLogStreams(1, 5)
	start := time.Now()
	_, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo $$ > cut.pid; echo hello; sleep 30"})
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "broke") || !strings.Contains(err.Error(), "before the command ended") {
		t.Fatalf("got %v, want ErrUnavailable saying the stream broke", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the broken stream was noticed after %v", took)
	}
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

// TestStoppedSandboxIsStartedOnUse: a sandbox stopped (session end, or
// Daytona's auto-stop) is started again by the next command, files kept.
func TestStoppedSandboxIsStartedOnUse(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{Labels: map[string]string{"session": "s1"}})
	if err := p.WriteFile(ctxT(t), sb.ID, "kept.txt", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
	if st := fake.Sandboxes()[0].State; st != "stopped" {
		t.Fatalf("after Release the sandbox is %s, want stopped", st)
	}
	other := newDriver(t, fakeOptions(url))
	if got, err := other.Get(ctxT(t), sb.ID); err != nil || got.ID != sb.ID || fake.Sandboxes()[0].State != "stopped" {
		t.Fatalf("Get of a stopped sandbox: %+v, %v (state %s); want it described, not started", got, err, fake.Sandboxes()[0].State)
	}
	found, err := other.List(ctxT(t), map[string]string{"session": "s1"})
	if err != nil || len(found) != 1 || found[0].ID != sb.ID {
		t.Fatalf("a later server cannot find the stopped sandbox by label: %+v, %v", found, err)
	}
	var out bytes.Buffer
	if _, err := other.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "cat kept.txt", Stdout: &out}); err != nil || out.String() != "kept" {
		t.Fatalf("Exec on the stopped sandbox: %q, %v", out.String(), err)
	}
	// p still holds the connection details from before the stop.
	if err := other.Stop(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "true"}); err != nil {
		t.Fatalf("Exec through a stale connection to a stopped sandbox: %v", err)
	}
}

func TestReleaseDeletesWhenAsked(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.DeleteOnClose = true
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{})
	if err := p.Release(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
	if left := fake.Sandboxes(); len(left) != 0 {
		t.Errorf("DAYTONA_DELETE_ON_CLOSE=true left %+v", left)
	}
}

// TestReap: only this server's running sandboxes whose owner is gone (or
// unknown, once expired) are released; a live owner's, another server's and
// a stopped one (kept on purpose) are not touched.
func TestReap(t *testing.T) {
	owner := func(label string) providers.Liveness {
		return map[string]providers.Liveness{"live": providers.OwnerLive, "gone": providers.OwnerDead}[label]
	}
	for _, deleteOnClose := range []bool{false, true} {
		t.Run(map[bool]string{false: "stops", true: "deletes"}[deleteOnClose], func(t *testing.T) {
			fake, url := startFake(t)
			o := fakeOptions(url)
			o.DeleteOnClose = deleteOnClose
			p := newDriver(t, o)
			orphan := create(t, p, providers.CreateOptions{Labels: map[string]string{"session": "gone"}})
			liveOne := create(t, p, providers.CreateOptions{Labels: map[string]string{"session": "live"}})
			unknown := create(t, p, providers.CreateOptions{Labels: map[string]string{"session": "elsewhere"}})
			kept := create(t, p, providers.CreateOptions{Labels: map[string]string{"session": "gone"}})
			if err := p.Stop(ctxT(t), kept.ID); err != nil {
				t.Fatal(err)
			}
			o.ServerID = "another-server"
			create(t, newDriver(t, o), providers.CreateOptions{Labels: map[string]string{"session": "gone"}})
			reaped, err := p.Reap(ctxT(t), owner)
			if err != nil || len(reaped) != 1 || reaped[0] != orphan.ID {
				t.Fatalf("Reap = %v, %v; want only %s", reaped, err, orphan.ID)
			}
			states := map[string]string{}
			for _, s := range fake.Sandboxes() {
				states[s.ID] = s.State
			}
			want, n := "stopped", 5
			if deleteOnClose {
				want, n = "", 4
			}
			if states[orphan.ID] != want || states[liveOne.ID] != "started" || states[unknown.ID] != "started" || states[kept.ID] != "stopped" || len(states) != n {
				t.Errorf("after Reap: %v (orphan %s, want %q)", states, orphan.ID, want)
			}
			// Once expired, an owner that cannot be known no longer holds it.
			o.ServerID, o.Expiry = "test-server", time.Millisecond
			expiring := create(t, newDriver(t, o), providers.CreateOptions{Labels: map[string]string{"session": "elsewhere"}})
			time.Sleep(5 * time.Millisecond)
			reaped, err = p.Reap(ctxT(t), owner)
			if err != nil || len(reaped) != 1 || reaped[0] != expiring.ID {
				t.Fatalf("Reap after the expiry = %v, %v; want %s", reaped, err, expiring.ID)
			}
		})
	}
}

// TestSandboxDeletedElsewhere: a cached connection to a deleted sandbox
// answers "not found".
func TestSandboxDeletedElsewhere(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	if err := newDriver(t, fakeOptions(url)).Destroy(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "true"}); !errors.Is(err, providers.ErrNotFound) || !strings.Contains(err.Error(), sb.ID) {
		t.Errorf("Exec: got %v, want ErrNotFound naming the sandbox", err)
	}
	if err := p.WriteFile(ctxT(t), sb.ID, "x", []byte("x"), 0); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("WriteFile: got %v, want ErrNotFound", err)
	}
}

// TestDemux: the labelled, escaped log splits back into the exact bytes,
// whatever the frame boundaries.
func TestDemux(t *testing.T) {
	for _, tc := range []struct {
		name, log      string
		stdout, stderr string
		started, ended bool
		code           int
		timedOut       bool
		report         string
	}{
		{
			name:   "escapes, split streams, exit code",
			log:    "\x01\x01\x01\\sa\\\\b\\0\\1\\2\n\x02\x02\x02\\serr\\0\n\x01\x01\x01\xff tail\\e137\n\x02\x02\x02\\e\n",
			stdout: "a\\b\x00\x01\x02\n\xff tail", stderr: "err\x00\n", started: true, ended: true, code: 137,
		},
		{
			name:   "the shell's words before the start mark are not the command's",
			log:    "\x02\x02\x02sh: 1: a\\b: not found\n\x02\x02\x02\\s\x01\x01\x01\\sok\\e0\n\x02\x02\x02\\e\n",
			stdout: "ok", started: true, ended: true, code: 0,
		},
		{
			name:   "a timeout",
			log:    "\x01\x01\x01\\spartial\\t\\e137\n\x02\x02\x02\\s\\e\n",
			stdout: "partial", started: true, ended: true, code: 137, timedOut: true,
		},
		{
			name:    "a cwd report",
			log:     "\x01\x01\x01\\s\\cnodir\\e1\n\x02\x02\x02\\s\\e\n",
			started: true, ended: true, code: 1, report: "nodir",
		},
		{
			name: "a helper that never started",
			log:  "\x02\x02\x02sh: 1: exec: /tmp/x: Permission denied\n",
		},
	} {
		for size := 1; size <= len(tc.log); size++ {
			var out, errOut bytes.Buffer
			d := newDemux(&out, &errOut)
			for b := []byte(tc.log); len(b) > 0; {
				n := min(size, len(b))
				if err := d.write(b[:n]); err != nil {
					t.Fatal(err)
				}
				b = b[n:]
			}
			code, ok := d.exitCode()
			if out.String() != tc.stdout || errOut.String() != tc.stderr || d.started() != tc.started || d.ended() != tc.ended ||
				ok != tc.ended || (ok && code != tc.code) || d.timedOut != tc.timedOut || d.report != tc.report {
				t.Fatalf("%s, frames of %d: stdout %q, stderr %q, started %v, ended %v, exit %d %v, timed out %v, report %q",
					tc.name, size, out.String(), errOut.String(), d.started(), d.ended(), code, ok, d.timedOut, d.report)
			}
		}
	}
}

// TestStdinIsStreamed: stdin reaches the command as it is written, not at
// end-of-file, so a command can answer one line before the next comes.
func TestStdinIsStreamed(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	in, feed := io.Pipe()
	out := &notifyingBuffer{seen: make(chan struct{}, 10)}
	done := make(chan error, 1)
	go func() {
		_, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "read a; echo got $a; read b; echo got $b", Stdin: in, Stdout: out, Timeout: 20 * time.Second})
		done <- err
	}()
	feed.Write([]byte("one\n"))
	for deadline := time.After(10 * time.Second); !strings.Contains(out.String(), "got one"); {
		select {
		case <-out.seen:
		case <-deadline:
			t.Fatalf("the first line was not answered before the second was sent (stdout %q)", out.String())
		}
	}
	feed.Write([]byte("two\n"))
	feed.Close()
	if err := <-done; err != nil || out.String() != "got one\ngot two\n" {
		t.Fatalf("stdout %q, %v", out.String(), err)
	}
}

type notifyingBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	seen chan struct{}
}

func (n *notifyingBuffer) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case n.seen <- struct{}{}:
	default:
	}
	return n.b.Write(p)
}

func (n *notifyingBuffer) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.b.String()
}

// Snapshots and images an agent may name are the operator's choice; a
// refused one never reaches the API.
func TestImagesAreTheOperatorsPolicy(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.Snapshot = "default-snap"
	for _, image := range []string{"costly-gpu", "image:python:3.12"} {
		_, err := newDriver(t, o).Create(ctxT(t), providers.CreateOptions{Image: image})
		if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), EnvAllowed) {
			t.Fatalf("%s: want a refusal naming %s, got %v", image, EnvAllowed, err)
		}
	}
	if n := fake.CreateRequests(); n != 0 {
		t.Fatalf("a refused image reached the API (%d creates)", n)
	}
	create(t, newDriver(t, o), providers.CreateOptions{Image: "default-snap"})
	o.AllowedImages = "costly-*"
	create(t, newDriver(t, o), providers.CreateOptions{Image: "costly-gpu"})
}

// TestCommandsWithoutTheHelper: a sandbox whose helper went away (or
// cannot run it) still runs commands, byte-exact and split, through the
// shell wrapper; the command is not run twice.
func TestCommandsWithoutTheHelper(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	name, _, ok := supervisor.HelperFile(helperMachine)
	if !ok {
		t.Fatal("this server has no helper built in")
	}
	c := p.cached(sb.ID)
	if c == nil {
		t.Fatal("a new sandbox is not cached")
	}
	<-c.installed // the upload goes on after Create returns
	if c.helper.Load() != helperReady {
		t.Fatal("a new sandbox has no helper in place")
	}
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "rm " + quoteArg(c.helperPath(name))}); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{
		Command: `echo run >>runs; printf 'a\000b\\'; printf 'e\001' >&2; exit 3`, Stdout: &out, Stderr: &errOut,
	})
	if err != nil || res.ExitCode != 3 || out.String() != "a\x00b\\" || errOut.String() != "e\x01" {
		t.Fatalf("got %+v, %v, stdout %q, stderr %q", res, err, out.String(), errOut.String())
	}
	if c.helper.Load() != helperUnusable {
		t.Errorf("the driver still counts on the helper")
	}
	out.Reset()
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "cat runs", Stdout: &out}); err != nil || out.String() != "run\n" {
		t.Errorf("the command ran %q times, %v", out.String(), err)
	}
}
