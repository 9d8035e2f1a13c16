package modal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/modal/modalfake"
)

func TestMissingTokensNameWhatIsMissing(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{nil, "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET environment variables are not set. Please set them to your Modal token ID and secret."},
		{map[string]string{EnvTokenSecret: "s"}, "MODAL_TOKEN_ID environment variable is not set. Please set it to your Modal token ID."},
		{map[string]string{EnvTokenID: "i"}, "MODAL_TOKEN_SECRET environment variable is not set. Please set it to your Modal token secret."},
	}
	for _, tc := range tests {
		_, err := providers.Open(context.Background(), Name, providers.Config{Getenv: func(k string) string { return tc.env[k] }})
		if err == nil || err.Error() != tc.want {
			t.Errorf("with %v: got %v, want %q", tc.env, err, tc.want)
		}
	}
	for _, bad := range []map[string]string{
		{EnvTokenID: "i", EnvTokenSecret: "s", EnvTimeout: "5"},
		{EnvTokenID: "i", EnvTokenSecret: "s", EnvTimeout: "48h"},
		{EnvTokenID: "i", EnvTokenSecret: "s", EnvServerURL: "grpc://x"},
	} {
		_, err := providers.Open(context.Background(), Name, providers.Config{Getenv: func(k string) string { return bad[k] }})
		if err == nil {
			t.Errorf("with %v: no error", bad)
		}
	}
}

func TestWrongTokenNamesTheVariables(t *testing.T) {
	_, url := startFake(t)
	o := fakeOptions(url)
	o.TokenSecret = "wrong"
	p := newDriver(t, o)
	start := time.Now()
	_, err := p.Create(ctxT(t), providers.CreateOptions{})
	if !errors.Is(err, providers.ErrDenied) || !strings.Contains(err.Error(), EnvTokenID) || !strings.Contains(err.Error(), EnvTokenSecret) {
		t.Fatalf("got %v, want an error naming both token variables", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a rejected token took %v to report: it must not be retried", took)
	}
}

// TestTagsLetAnotherServerFindAndReap: what a session owns is found again
// by tag from a driver that did not create it; this server's sandboxes go
// at once when their owner is known dead, after expiry when it is unknown,
// never while it is live; other servers' are left alone.
func TestTagsLetAnotherServerFindAndReap(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.Expiry = 4 * time.Second
	p := newDriver(t, o)
	mine := create(t, p, providers.CreateOptions{Name: "mine", Env: map[string]string{"FROM_CREATE": "yes"}, Labels: map[string]string{providers.LabelSession: "s1"}})
	live := create(t, p, providers.CreateOptions{Name: "live", Labels: map[string]string{providers.LabelSession: "s2"}})
	other := o
	other.ServerID = "other-server"
	theirs := create(t, newDriver(t, other), providers.CreateOptions{Name: "theirs"})
	for _, s := range fake.Sandboxes() {
		if s.ID == mine.ID && (s.Tags[providers.LabelSession] != "s1" || s.Tags[tagServer] != "test-server" || s.Tags[tagName] != "mine" || s.ImageRef != "alpine:3.21") {
			t.Errorf("the sandbox on the fake: %+v", s)
		}
	}

	restarted := newDriver(t, o)
	found, err := restarted.List(ctxT(t), map[string]string{providers.LabelSession: "s1"})
	if err != nil || len(found) != 1 || found[0].ID != mine.ID || found[0].Name != "mine" || found[0].Image != "alpine:3.21" {
		t.Fatalf("List(session=s1) = %+v, %v", found, err)
	}
	if _, ok := found[0].Labels[tagServer]; ok || found[0].Labels[providers.LabelSession] != "s1" {
		t.Errorf("labels %v: want the caller's labels only", found[0].Labels)
	}
	got, err := restarted.Get(ctxT(t), mine.ID)
	if err != nil || got.Workdir != mine.Workdir || got.Name != "mine" {
		t.Fatalf("Get from a fresh driver: %+v, %v (want workdir %s)", got, err, mine.Workdir)
	}
	var out bytes.Buffer
	if _, err := restarted.Exec(ctxT(t), mine.ID, providers.ExecRequest{Command: "echo $FROM_CREATE", Stdout: &out}); err != nil || out.String() != "yes\n" {
		t.Fatalf("Exec from a fresh driver: %q, %v", out.String(), err)
	}

	owner := func(label string) providers.Liveness {
		return map[string]providers.Liveness{"s2": providers.OwnerLive, "s3": providers.OwnerDead}[label]
	}
	dead := create(t, p, providers.CreateOptions{Name: "dead", Labels: map[string]string{providers.LabelSession: "s3"}})
	if removed, err := restarted.Reap(ctxT(t), owner); err != nil || len(removed) != 1 || removed[0] != dead.ID {
		t.Fatalf("Reap before expiry removed %v, %v; want only the dead owner's %s", removed, err, dead.ID)
	}
	time.Sleep(time.Until(mine.CreatedAt.Add(o.Expiry + 100*time.Millisecond)))
	removed, err := restarted.Reap(ctxT(t), owner)
	if err != nil || len(removed) != 1 || removed[0] != mine.ID {
		t.Fatalf("Reap after expiry removed %v, %v; want only %s", removed, err, mine.ID)
	}
	left := map[string]bool{}
	for _, s := range fake.Sandboxes() {
		left[s.ID] = true
	}
	if left[mine.ID] || !left[live.ID] || !left[theirs.ID] {
		t.Errorf("left on the fake: %v; want the live session's and the other server's", left)
	}
	if _, err := p.Get(ctxT(t), mine.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Get of a reaped sandbox: %v", err)
	}
	_, err = p.Create(ctxT(t), providers.CreateOptions{Labels: map[string]string{tagServer: "x"}})
	if !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("a label with the reserved prefix: got %v", err)
	}
}

// TestTransientFailuresAndThrottling: calls survive UNAVAILABLE and
// follow the server's retry delay; a server that keeps failing gives up
// within seconds with a message naming the URL setting.
func TestTransientFailuresAndThrottling(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{Name: "r"})

	fake.FailCalls(2, codes.Unavailable)
	if got, err := p.Get(ctxT(t), sb.ID); err != nil || got.Name != "r" {
		t.Fatalf("Get after two UNAVAILABLEs: %+v, %v", got, err)
	}

	fake.Throttle(1, 700*time.Millisecond)
	start := time.Now()
	if _, err := p.List(ctxT(t), nil); err != nil {
		t.Fatalf("List after throttling: %v", err)
	}
	if took := time.Since(start); took < 700*time.Millisecond {
		t.Errorf("retried after %v, before the server's retry delay of 700ms", took)
	}

	fake.FailCalls(100, codes.Unavailable)
	start = time.Now()
	_, err := p.Get(ctxT(t), sb.ID)
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), EnvServerURL) {
		t.Errorf("Get while Modal keeps failing: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %v", took)
	}
	fake.FailCalls(0, codes.OK)

	before := fake.Calls("SandboxListV2")
	fake.FailCalls(1, codes.InvalidArgument)
	if _, err := p.List(ctxT(t), nil); !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("a permanent error: %v, want ErrInvalidArgument", err)
	}
	if n := fake.Calls("SandboxListV2") - before; n != 1 {
		t.Errorf("SandboxListV2 called %d times; a permanent error must not be retried", n)
	}
}

func TestSlowControlPlaneTimesOut(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.RequestTimeout = 200 * time.Millisecond
	o.Retries = 1
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{})
	fake.SetLatency(time.Second)
	start := time.Now()
	_, err := p.Get(ctxT(t), sb.ID)
	if !errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("Get from a control plane slower than the request timeout: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("gave up after %v", took)
	}
	fake.SetLatency(0)
}

// TestStuckCreateLeavesNothing: a create that never answers is given up
// on, and the sandbox it made anyway is found by its nonce and terminated.
func TestStuckCreateLeavesNothing(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.CreateTimeout = 300 * time.Millisecond
	o.Retries = 1
	p := newDriver(t, o)
	fake.HangCreates(true)
	_, err := p.Create(ctxT(t), providers.CreateOptions{Name: "stuck"})
	if !errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("a stuck create: %v, want ErrUnavailable", err)
	}
	if n := fake.Calls("SandboxCreateV2"); n != 2 {
		t.Errorf("%d create calls, want 2 (one retry)", n)
	}
	if left := fake.Sandboxes(); len(left) != 0 {
		t.Errorf("a failed create left %d sandboxes running", len(left))
	}
	fake.HangCreates(false)
	create(t, p, providers.CreateOptions{})
}

// TestCutStreamResumesAtItsOffset: a router stream that breaks in the
// middle is reopened where it stopped; no byte is lost or repeated.
func TestCutStreamResumesAtItsOffset(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	fake.CutStreams(2, 100_000)
	var out bytes.Buffer
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "seq 1 100000", Stdout: &out})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("got %+v, %v", res, err)
	}
	var want bytes.Buffer
	for i := 1; i <= 100000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	if !bytes.Equal(out.Bytes(), want.Bytes()) {
		t.Errorf("got %d bytes after two cuts, want %d", out.Len(), want.Len())
	}
	data := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300_000)
	if err := p.WriteFile(ctxT(t), sb.ID, "big.bin", data, 0); err != nil {
		t.Fatal(err)
	}
	fake.CutStreams(1, 500_000)
	rc, _, err := p.ReadFile(ctxT(t), sb.ID, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	back.ReadFrom(rc)
	if !bytes.Equal(back.Bytes(), data) {
		t.Errorf("read %d bytes after a cut download, want the %d written", back.Len(), len(data))
	}
}

// TestSandboxEndedByItsTimeout: a sandbox Modal ended is not found, for
// commands and files as for Get, and the cached connection is dropped.
func TestSandboxEndedByItsTimeout(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	if !fake.ExpireSandbox(sb.ID) {
		t.Fatal("the fake does not know the sandbox")
	}
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "true"}); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Exec: got %v, want ErrNotFound", err)
	}
	if err := p.WriteFile(ctxT(t), sb.ID, "x", []byte("x"), 0); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("WriteFile: got %v, want ErrNotFound", err)
	}
	if _, err := p.Get(ctxT(t), sb.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Get: got %v, want ErrNotFound", err)
	}
	if err := p.Destroy(ctxT(t), sb.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Destroy: got %v, want ErrNotFound", err)
	}
}

// TestCancelKillsTheCommandTree: the router has no kill call; the driver
// kills what a cancelled or timed-out command started, background
// children included.
func TestCancelKillsTheCommandTree(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{{"cancel", 0}, {"timeout", 400 * time.Millisecond}} {
		pidFile := tc.name + ".pid"
		ctx, cancel := context.WithCancel(ctxT(t))
		if tc.timeout == 0 {
			time.AfterFunc(400*time.Millisecond, cancel)
		}
		res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "(sleep 1000; echo x) & echo $! > " + pidFile + "; wait", Timeout: tc.timeout})
		cancel()
		if tc.timeout == 0 && !errors.Is(err, context.Canceled) || tc.timeout > 0 && (err != nil || !res.TimedOut) {
			t.Fatalf("%s: got %+v, %v", tc.name, res, err)
		}
		var out bytes.Buffer
		check := "p=$(cat " + pidFile + "); for i in $(seq 50); do kill -0 $p 2>/dev/null || { echo dead; exit; }; sleep 0.1; done; echo alive"
		if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: check, Stdout: &out}); err != nil || out.String() != "dead\n" {
			t.Errorf("%s: the background child is %q (%v)", tc.name, out.String(), err)
		}
	}
}

func TestImagesAreTheOperatorsPolicy(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	o.AllowedImages = "python:*, ghcr.io/acme/*"
	p := newDriver(t, o)
	for _, tc := range []struct {
		image string
		ok    bool
	}{{"", true}, {"alpine:3.21", true}, {"python:3.13-slim", true}, {"ghcr.io/acme/tools:1", true}, {"ubuntu:24.04", false}, {"evil.example/python:3", false}} {
		sb, err := p.Create(ctxT(t), providers.CreateOptions{Image: tc.image})
		if tc.ok {
			if err != nil {
				t.Errorf("image %q: %v", tc.image, err)
				continue
			}
			p.Destroy(ctxT(t), sb.ID)
			continue
		}
		if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), EnvAllowed) {
			t.Errorf("image %q: got %v, want a refusal naming %s", tc.image, err, EnvAllowed)
		}
	}
	if n := fake.Calls("SandboxCreateV2"); n != 4 {
		t.Errorf("%d creates reached Modal, want the 4 allowed", n)
	}
}

// TestTokensAreRenewed: the control plane's auth token is renewed at half
// its lifetime, a router token shortly before it expires, and a router
// token the router refuses is fetched again once.
func TestTokensAreRenewed(t *testing.T) {
	fake, url := startFakeWith(t, modalfake.Options{AuthTokenTTL: 2 * time.Second, RouterTokenTTL: 20 * time.Second})
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	run := func() {
		t.Helper()
		var out bytes.Buffer
		if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo ok", Stdout: &out}); err != nil || out.String() != "ok\n" {
			t.Fatalf("Exec: %q, %v", out.String(), err)
		}
	}
	access := fake.Calls("SandboxGetCommandRouterAccess")
	run()
	if fake.Calls("SandboxGetCommandRouterAccess") == access {
		t.Errorf("a router token 20s from expiry was not renewed before use")
	}
	auth := fake.Calls("AuthTokenGet")
	time.Sleep(1100 * time.Millisecond)
	if _, err := p.Get(ctxT(t), sb.ID); err != nil {
		t.Fatal(err)
	}
	if fake.Calls("AuthTokenGet") == auth {
		t.Errorf("the auth token was not renewed past half its lifetime")
	}

	// A refused router token is fetched again, once, and the call succeeds.
	other, url2 := startFake(t)
	p2 := newDriver(t, fakeOptions(url2))
	sb2 := create(t, p2, providers.CreateOptions{})
	other.RotateRouterTokens()
	access = other.Calls("SandboxGetCommandRouterAccess")
	var out bytes.Buffer
	if _, err := p2.Exec(ctxT(t), sb2.ID, providers.ExecRequest{Command: "echo again", Stdout: &out}); err != nil || out.String() != "again\n" {
		t.Fatalf("Exec after the router token was rotated: %q, %v", out.String(), err)
	}
	if other.Calls("SandboxGetCommandRouterAccess") == access {
		t.Errorf("the refused router token was not fetched again")
	}
}

// TestUnreadStdinIsLetGo: a command that ends without reading its stdin
// returns, and the driver stops reading the caller's input then, even when
// that input never ends.
func TestUnreadStdinIsLetGo(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	r, w := io.Pipe()
	t.Cleanup(func() { r.Close(); w.Close() })
	go w.Write([]byte("some input, then nothing more"))
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo done", Stdin: r})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("got %+v, %v", res, err)
	}
	// A read the copier had already begun may take one more write; none
	// after it must be read.
	time.Sleep(100 * time.Millisecond)
	wrote := make(chan struct{})
	go func() { w.Write([]byte("more")); w.Write([]byte("again")); close(wrote) }()
	select {
	case <-wrote:
		t.Error("the driver still reads the caller's stdin after the command ended")
	case <-time.After(500 * time.Millisecond):
	}
}

// TestWriteOverADirectoryLeavesNothing: a write refused because the target
// is a directory removes its upload; a write with a mode sets it.
func TestWriteOverADirectoryLeavesNothing(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "mkdir -p d/sub"}); err != nil {
		t.Fatal(err)
	}
	err := p.WriteFile(ctxT(t), sb.ID, "d/sub", []byte("x"), 0)
	if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("writing over a directory: %v", err)
	}
	var out bytes.Buffer
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "ls -A d d/sub", Stdout: &out}); err != nil || strings.Contains(out.String(), "mcp-sandbox") {
		t.Errorf("left behind: %q (%v)", out.String(), err)
	}
	if err := p.WriteFile(ctxT(t), sb.ID, "d/run.sh", []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if fi, err := p.Stat(ctxT(t), sb.ID, "d/run.sh"); err != nil || fi.Mode.Perm() != 0o750 {
		t.Errorf("mode after a write with 0750: %v, %v", fi.Mode, err)
	}
}

// TestCutWriteLeavesNoTempFile: a write given up on at any step (the
// upload, the directory check, the move into place), on a slow router,
// leaves the old file or the new one and no temp file beside it.
func TestCutWriteLeavesNoTempFile(t *testing.T) {
	fake, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	old, fresh := []byte("old\n"), bytes.Repeat([]byte("new\n"), 1<<10)
	if err := p.WriteFile(ctxT(t), sb.ID, "cut/f", old, 0); err != nil {
		t.Fatal(err)
	}
	fake.SetLatency(20 * time.Millisecond)
	defer fake.SetLatency(0)
	began := time.Now()
	if err := p.WriteFile(ctxT(t), sb.ID, "cut/f", old, 0); err != nil {
		t.Fatal(err)
	}
	whole := time.Since(began)
	for i := 0; i <= 24; i++ {
		cut := whole * time.Duration(i) / 20
		ctx, cancel := context.WithTimeout(ctxT(t), cut)
		err := p.WriteFile(ctx, sb.ID, "cut/f", fresh, 0)
		cancel()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			entries, _, lerr := p.ListFiles(ctxT(t), sb.ID, "cut", 1, 0)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if len(entries) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a write cut after %v of %v (%v) left %+v", cut, whole, err, entries)
			}
		}
		var got []byte
		rc, _, rerr := p.ReadFile(ctxT(t), sb.ID, "cut/f")
		if rerr == nil {
			got, rerr = io.ReadAll(rc)
			rc.Close()
		}
		if rerr != nil || (!bytes.Equal(got, old) && !bytes.Equal(got, fresh)) {
			t.Fatalf("a write cut after %v: the file holds %d bytes (%v)", cut, len(got), rerr)
		}
		if err := p.WriteFile(ctxT(t), sb.ID, "cut/f", old, 0); err != nil {
			t.Fatal(err)
		}
	}
}
