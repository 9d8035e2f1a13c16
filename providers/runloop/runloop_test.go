package runloop

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

func env(kv ...string) providers.Config {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return providers.Config{Getenv: func(k string) string { return m[k] }, ServerID: "srv"}
}

func TestFactoryWithoutKey(t *testing.T) {
	_, err := providers.Open(context.Background(), Name, env(EnvBaseURL, "http://127.0.0.1:1"))
	if err == nil || err.Error() != MissingKeyMessage {
		t.Fatalf("got %v, want exactly %q", err, MissingKeyMessage)
	}
}

func TestOptionsFromConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     providers.Config
		check   func(Options) bool
		wantErr string
	}{
		{"defaults", env(EnvAPIKey, "k"), func(o Options) bool {
			return o.BaseURL == DefaultBaseURL && o.ResourceSize == "SMALL" && o.KeepAlive == DefaultKeepAlive && o.ServerID == "srv"
		}, ""},
		{"the vendor's base URL variable", env(EnvAPIKey, "k", EnvBaseURL, "http://127.0.0.1:9/"), func(o Options) bool { return o.BaseURL == "http://127.0.0.1:9/" }, ""},
		{"size in any case", env(EnvAPIKey, "k", EnvResourceSize, "x_small"), func(o Options) bool { return o.ResourceSize == "X_SMALL" }, ""},
		{"unknown size", env(EnvAPIKey, "k", EnvResourceSize, "HUGE"), nil, EnvResourceSize},
		{"keep-alive too short", env(EnvAPIKey, "k", EnvKeepAlive, "10s"), nil, EnvKeepAlive},
		{"keep-alive not a duration", env(EnvAPIKey, "k", EnvKeepAlive, "soon"), nil, EnvKeepAlive},
		{"base URL without a scheme", env(EnvAPIKey, "k", EnvBaseURL, "api.runloop.ai"), nil, EnvBaseURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := OptionsFromConfig(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(o) {
				t.Fatalf("got %+v, %v", o, err)
			}
		})
	}
}

func TestWrongAPIKeyIsNotRetried(t *testing.T) {
	fake, url := startFake(t, runloopfake.Options{})
	o := fakeOptions(url)
	o.APIKey = "wrong"
	_, err := newDriver(t, o).Create(ctxT(t), providers.CreateOptions{})
	if !errors.Is(err, providers.ErrDenied) || !strings.Contains(err.Error(), EnvAPIKey) {
		t.Fatalf("got %v, want ErrDenied naming %s", err, EnvAPIKey)
	}
	if fake.Creates() != 0 || len(fake.Devboxes()) != 0 {
		t.Fatalf("a refused key made devboxes")
	}
}

// A create that fails part-way never leaves a devbox running.
func TestCreateRetriesAndLeavesNothing(t *testing.T) {
	tests := []struct {
		name     string
		inject   func(*runloopfake.Server)
		wantErr  error
		wantLeft int
	}{
		{"503 twice, then created", func(f *runloopfake.Server) { f.FailCreates(2, 503) }, nil, 1},
		{"503 every time", func(f *runloopfake.Server) { f.FailCreates(100, 503) }, providers.ErrUnavailable, 0},
		{"made but the answer lost, then the retry finds it", func(f *runloopfake.Server) { f.LoseCreateResponses(1, 502) }, nil, 1},
		{"made and every answer lost", func(f *runloopfake.Server) { f.LoseCreateResponses(100, 502) }, providers.ErrUnavailable, 0},
		{"a permanent 400", func(f *runloopfake.Server) { f.FailCreates(1, 400) }, providers.ErrInvalidArgument, 0},
		{"stuck provisioning", func(f *runloopfake.Server) { f.StickProvisioning(1) }, providers.ErrTimeout, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, runloopfake.Options{LongPoll: 100 * time.Millisecond})
			o := fakeOptions(url)
			o.CreateWait = time.Second
			p := newDriver(t, o)
			tc.inject(fake)
			start := time.Now()
			sb, err := p.Create(ctxT(t), providers.CreateOptions{Name: "x"})
			if err == nil {
				t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
			}
			if !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v: retries must be bounded", took)
			}
			if left := fake.Devboxes(); len(left) != tc.wantLeft {
				t.Errorf("%d devboxes left running, want %d: %+v", len(left), tc.wantLeft, left)
			}
		})
	}
}

func TestRetryPolicy(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		after     string
		wantErr   error
		minTook   time.Duration
		wantCalls int // requests the fault absorbed
	}{
		{"429 waits its Retry-After", 429, "1", nil, time.Second, 1},
		{"429 asking too long fails at once, saying how long", 429, "3600", providers.ErrUnavailable, 0, 1},
		{"500 retried", 500, "", nil, 0, 2},
		{"408 outside a long poll retried", 408, "", nil, 0, 1},
		{"404 is not retried", 404, "", providers.ErrNotFound, 0, 1},
		{"422 is not retried", 422, "", providers.ErrInvalidArgument, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, runloopfake.Options{})
			p := newDriver(t, fakeOptions(url))
			sb := create(t, p, providers.CreateOptions{})
			fake.FailRequests(tc.wantCalls, tc.status, "/execute_async", tc.after)
			start := time.Now()
			var out bytes.Buffer
			_, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo ok", Stdout: &out})
			took := time.Since(start)
			if tc.wantErr == nil {
				if err != nil || out.String() != "ok\n" {
					t.Fatalf("got %q, %v", out.String(), err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if took < tc.minTook {
				t.Errorf("took %v, want at least %v", took, tc.minTook)
			}
			if tc.after == "3600" && (took > 2*time.Second || !strings.Contains(err.Error(), "1h0m0s")) {
				t.Errorf("took %v, error %v: want a quick failure naming the delay", took, err)
			}
		})
	}
}

func TestUnreachableFailsInSeconds(t *testing.T) {
	o := fakeOptions("http://127.0.0.1:1")
	o.RetryBase = 0 // the default backoff
	p := newDriver(t, o)
	start := time.Now()
	_, err := p.Create(ctxT(t), providers.CreateOptions{})
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), EnvBaseURL) {
		t.Fatalf("got %v, want ErrUnavailable naming %s", err, EnvBaseURL)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v to give up on an unreachable API", took)
	}
}

// Long polls answered 408 are asked again, and the devbox is awaited with
// them rather than with client-side sleeps.
func TestLongPollsContinueAfter408(t *testing.T) {
	fake, url := startFake(t, runloopfake.Options{ProvisionDelay: 300 * time.Millisecond, LongPoll: 50 * time.Millisecond})
	p := newDriver(t, fakeOptions(url))
	fake.TimeOutLongPolls(3)
	sb := create(t, p, providers.CreateOptions{})
	var out bytes.Buffer
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo up", Stdout: &out}); err != nil || out.String() != "up\n" {
		t.Fatalf("got %q, %v", out.String(), err)
	}
}

func TestCutStreamsAndDownloadsResume(t *testing.T) {
	fake, url := startFake(t, runloopfake.Options{})
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	data := make([]byte, 1<<20)
	rand.Read(data)
	if err := p.WriteFile(ctxT(t), sb.ID, "big.bin", data, 0); err != nil {
		t.Fatal(err)
	}
	fake.CutDownloads(2, 1000)
	rc, fi, err := p.ReadFile(ctxT(t), sb.ID, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) || fi.Size != int64(len(data)) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
	}

	fake.CutStreams(2, 5000)
	var out bytes.Buffer
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "cat big.bin; exit 7", Stdout: &out})
	if err != nil || res.ExitCode != 7 || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("got exit %d, %d bytes, %v; want exit 7 and the file", res.ExitCode, out.Len(), err)
	}
}

// A file that grows while it is read ends at the size ReadFile reported:
// a log written without end cannot make a read endless.
func TestReadFileStopsAtTheCheckedSize(t *testing.T) {
	_, url := startFake(t, runloopfake.Options{})
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	if err := p.WriteFile(ctxT(t), sb.ID, "log", []byte("first\n"), 0); err != nil {
		t.Fatal(err)
	}
	rc, fi, err := p.ReadFile(ctxT(t), sb.ID, "log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo second >> log"}); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != "first\n" || fi.Size != 6 {
		t.Fatalf("read %q (size %d), %v; want the 6 bytes there when it was checked", got, fi.Size, err)
	}
}

// A timeout ends the command in the devbox with SIGTERM, so what it wrote
// first still arrives; a command that ignores SIGTERM is killed outright
// soon after.
func TestTimeoutEndsCommandsThatIgnoreSIGTERM(t *testing.T) {
	_, url := startFake(t, runloopfake.Options{})
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	for _, tc := range []struct{ name, command string }{
		{"obeys", "echo started; sleep 1000"},
		{"ignores", "trap '' TERM; echo started; sleep 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			start := time.Now()
			res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: tc.command, Stdout: &out, Timeout: 500 * time.Millisecond})
			took := time.Since(start)
			if err != nil || !res.TimedOut || res.ExitCode == 0 || took > 10*time.Second {
				t.Fatalf("got %+v, %v after %v; want a timeout soon after 500ms", res, err, took)
			}
			if out.String() != "started\n" {
				t.Errorf("output before the timeout was %q", out.String())
			}
		})
	}
}

// The devbox's keep-alive is renewed while a command runs, and an unused
// devbox shuts down when it runs out.
func TestKeepAlive(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a keep-alive to run out")
	}
	fake, url := startFake(t, runloopfake.Options{})
	o := fakeOptions(url)
	o.KeepAlive = 2 * time.Second
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{})
	if launch := fake.Devboxes()[0].Launch; launch["keep_alive_time_seconds"] != 2.0 || launch["resource_size_request"] != "SMALL" {
		t.Fatalf("launch parameters %v", launch)
	}
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "sleep 4; echo still here"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("a command longer than the keep-alive: %+v, %v", res, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fake.Devboxes()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if len(fake.Devboxes()) != 0 {
		t.Fatal("an unused devbox outlived its keep-alive")
	}
	if _, err := p.Get(ctxT(t), sb.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("Get of a devbox shut down for idleness: %v", err)
	}
}

func TestReap(t *testing.T) {
	fake, url := startFake(t, runloopfake.Options{})
	o := fakeOptions(url)
	o.Expiry = time.Millisecond
	p := newDriver(t, o)
	live := create(t, p, providers.CreateOptions{Labels: map[string]string{providers.LabelSession: "live"}})
	dead := create(t, p, providers.CreateOptions{Labels: map[string]string{providers.LabelSession: "gone"}})
	other := o
	other.ServerID = "another-server"
	theirs := create(t, newDriver(t, other), providers.CreateOptions{Labels: map[string]string{providers.LabelSession: "gone"}})
	time.Sleep(10 * time.Millisecond)

	removed, err := p.Reap(ctxT(t), func(s string) providers.Liveness {
		if s == "live" {
			return providers.OwnerLive
		}
		return providers.OwnerUnknown // expired, so reaped all the same
	})
	if err != nil || len(removed) != 1 || removed[0] != dead.ID {
		t.Fatalf("Reap removed %v (%v), want only %s", removed, err, dead.ID)
	}
	var ids []string
	for _, d := range fake.Devboxes() {
		ids = append(ids, d.ID)
	}
	if strings.Join(ids, ",") != live.ID+","+theirs.ID {
		t.Fatalf("left %v, want the live session's and the other server's", ids)
	}
	// A dead owner's devbox goes before its expiry; an unknown owner's stays.
	o.Expiry = time.Hour
	later := newDriver(t, o)
	orphan := create(t, later, providers.CreateOptions{Labels: map[string]string{providers.LabelSession: "dead"}})
	unsure := create(t, later, providers.CreateOptions{Labels: map[string]string{providers.LabelSession: "unsure"}})
	removed, err = later.Reap(ctxT(t), func(s string) providers.Liveness {
		switch s {
		case "dead":
			return providers.OwnerDead
		case "live":
			return providers.OwnerLive
		}
		return providers.OwnerUnknown
	})
	if err != nil || len(removed) != 1 || removed[0] != orphan.ID {
		t.Fatalf("Reap removed %v (%v), want only the dead owner's %s (not %s)", removed, err, orphan.ID, unsure.ID)
	}
	for _, d := range fake.Devboxes() {
		if d.Metadata["mcp-sandbox.server"] == "" || d.Metadata["mcp-sandbox.expires"] == "" || d.Metadata[providers.LabelSession] == "" {
			t.Errorf("devbox %s lacks the server, expiry or session in its metadata: %v", d.ID, d.Metadata)
		}
	}
}

func TestImageChoosesBlueprintOrSnapshot(t *testing.T) {
	for _, tc := range []struct{ image, field string }{
		{"bpt_123", "blueprint_id"}, {"snp_456", "snapshot_id"}, {"my-blueprint", "blueprint_name"}, {"", ""},
	} {
		body := map[string]any{}
		image(body, tc.image)
		if tc.field == "" && len(body) != 0 || tc.field != "" && body[tc.field] != tc.image {
			t.Errorf("image %q gave %v, want %s", tc.image, body, tc.field)
		}
	}
}

func TestRetryAfterHeaders(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"9"}}, 1500 * time.Millisecond},
		{http.Header{}, 0},
	} {
		if got := retryAfter(tc.h); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.h, got, tc.want)
		}
	}
}

// TestCommandsWithoutTheHelper: a devbox whose helper went away is given
// it again, once; one where it still cannot run runs commands, byte-exact
// and split, through the shell wrapper. No command runs twice.
func TestCommandsWithoutTheHelper(t *testing.T) {
	_, url := startFake(t, runloopfake.Options{})
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	name, _, ok := supervisor.HelperFile(helperMachine)
	if !ok {
		t.Fatal("this server has no helper built in")
	}
	in, err := p.info(ctxT(t), sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	helper := shellQuote(in.helperPath(name))
	run := func(command string) (providers.ExecResult, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: command, Stdout: &out, Stderr: &errOut})
		if err != nil {
			t.Fatal(err)
		}
		return res, out.String(), errOut.String()
	}
	const probe = `echo run >>runs; printf 'a\000b'; printf 'e\001' >&2; exit 3`
	for _, tc := range []struct {
		name, spoil string
		want        int32
	}{
		// Not uploaded by this driver (another server's devbox): put back.
		{"removed", "rm " + helper, helperReady},
		// Uploaded by this driver and still unusable: the wrapper serves.
		{"unusable", "rm " + helper + " && mkdir " + helper, helperUnusable},
	} {
		p.mu.Lock()
		in.uploaded = false
		if tc.want == helperUnusable {
			in.uploaded = true
		}
		p.mu.Unlock()
		run(tc.spoil + "; rm -f runs")
		res, out, errOut := run(probe)
		if res.ExitCode != 3 || out != "a\x00b" || errOut != "e\x01" {
			t.Fatalf("%s: got %+v, stdout %q, stderr %q", tc.name, res, out, errOut)
		}
		if state, _ := p.helperState(in); state != tc.want {
			t.Errorf("%s: helper state %d, want %d", tc.name, state, tc.want)
		}
		if _, out, _ := run("cat runs"); out != "run\n" {
			t.Errorf("%s: the command ran %q times", tc.name, out)
		}
	}
}
