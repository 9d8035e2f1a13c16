package runloop

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
)

// The shared suite with file calls that always check by command, as where
// no channel can be had.
func TestProviderSuiteWithoutChannel(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole suite again")
	}
	url := externalFake(t)
	providertest.Run(t, func(t *testing.T) providers.Provider {
		o := fakeOptions(url)
		o.NoChannel = true
		return newDriver(t, o)
	})
}

// requestLog counts the API requests by what their path ends with.
type requestLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (l *requestLog) RoundTrip(r *http.Request) (*http.Response, error) {
	p := r.URL.Path
	p = p[strings.LastIndexByte(p, '/')+1:]
	l.mu.Lock()
	l.n[p]++
	l.mu.Unlock()
	return l.next.RoundTrip(r)
}

func (l *requestLog) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.n
	l.n = map[string]int{}
	return n
}

func loggedDriver(t *testing.T, url string) (*Provider, *requestLog) {
	log := &requestLog{next: http.DefaultTransport.(*http.Transport).Clone(), n: map[string]int{}}
	o := fakeOptions(url)
	o.HTTPClient = &http.Client{Transport: log}
	return newDriver(t, o), log
}

// openChannel makes a file call and waits until the devbox's channel is
// open, returning it.
func waitChannel(t *testing.T, p *Provider, id string) *fileChannel {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := p.Stat(ctxT(t), id, "."); err != nil {
			t.Fatal(err)
		}
		if v, ok := p.chans.Load(id); ok {
			s := v.(*chanSlot)
			s.mu.Lock()
			c := s.c
			s.mu.Unlock()
			if c != nil {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the devbox's channel did not open")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// helperPID asks the channel's helper for its pid: the parent of a
// command it starts.
func helperPID(t *testing.T, c *fileChannel) int {
	t.Helper()
	var out bytes.Buffer
	code, _, err := c.ch.Run(ctxT(t), c.home, []string{"/bin/sh", "-c", "echo $PPID"}, nil, &out)
	pid, perr := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil || code != 0 || perr != nil {
		t.Fatalf("the helper's pid: exit %d, %q, %v", code, out.String(), err)
	}
	return pid
}

func checkFile(t *testing.T, p *Provider, id, name string, want []byte) {
	t.Helper()
	rc, fi, err := p.ReadFile(ctxT(t), id, name)
	if err != nil {
		t.Fatalf("ReadFile(%s): %v", name, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) || fi.Size != int64(len(want)) {
		t.Fatalf("ReadFile(%s): %d bytes (size %d), %v; want the %d written", name, len(got), fi.Size, err, len(want))
	}
}

// noTemps fails when a write left a temporary file in the home directory.
func noTemps(t *testing.T, p *Provider, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _, err := p.ListFiles(ctxT(t), id, ".", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, e := range ents {
			if strings.Contains(e.Path, ".mcp-sandbox-") {
				left = append(left, e.Path)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporary files left: %q", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Once the channel is open, writes, reads and stats run no command: an
// upload or download and one line each way.
func TestFileCallsUseTheChannel(t *testing.T) {
	_, url := startFake(t, runloopfake.Options{})
	p, log := loggedDriver(t, url)
	sb := create(t, p, providers.CreateOptions{})
	waitChannel(t, p, sb.ID)
	data := make([]byte, 300<<10)
	rand.Read(data)
	log.take()
	if err := p.WriteFile(ctxT(t), sb.ID, "sub/f.bin", data, 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, sb.ID, "sub/f.bin", data)
	fi, err := p.Stat(ctxT(t), sb.ID, "sub/f.bin")
	if err != nil || fi.Type != providers.TypeFile || fi.Mode.Perm() != 0o600 || fi.Size != int64(len(data)) {
		t.Fatalf("Stat: %+v, %v", fi, err)
	}
	got := log.take()
	if got["execute"]+got["execute_async"] != 0 || got["send_std_in"] != 3 || got["upload_file"] != 1 || got["download_file"] != 1 {
		t.Errorf("requests: %v; want an upload, a download, three lines of stdin and no command", got)
	}
	// Refusals read as they do by command.
	if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "mkdir dir && ln -s nowhere dangling && mkfifo fifo"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		kind error
		say  string
	}{{"dir", providers.ErrInvalidArgument, "is a directory"}, {"dangling", providers.ErrNotFound, "a symlink to nothing"}, {"fifo", providers.ErrInvalidArgument, "not a regular file"}, {"none", providers.ErrNotFound, "no such file"}} {
		if _, _, err := p.ReadFile(ctxT(t), sb.ID, tc.name); !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.say) {
			t.Errorf("ReadFile(%s): %v; want %v saying %q", tc.name, err, tc.kind, tc.say)
		}
	}
	log.take()
	if err := p.WriteFile(ctxT(t), sb.ID, "dir", []byte("x"), 0); !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a write over a directory: %v", err)
	}
	if got := log.take(); got["execute"] != 1 || got["execute_async"] != 0 {
		t.Errorf("requests: %v; want one command, the removal of the refused upload", got)
	}
	if fi, err := p.Stat(ctxT(t), sb.ID, "dangling"); err != nil || fi.Type != providers.TypeSymlink {
		t.Errorf("Stat(dangling): %+v, %v", fi, err)
	}
	noTemps(t, p, sb.ID)
}

// A helper killed or stopped from inside the devbox loses no write and
// hangs no call: the calls take the command path, and another channel
// opens later.
func TestFileChannelHelperKilledOrStopped(t *testing.T) {
	for _, signal := range []string{"KILL", "STOP"} {
		t.Run(signal, func(t *testing.T) {
			_, url := startFake(t, runloopfake.Options{})
			p := newDriver(t, fakeOptions(url))
			p.channelRetry = 200 * time.Millisecond
			sb := create(t, p, providers.CreateOptions{})
			c := waitChannel(t, p, sb.ID)
			pid := helperPID(t, c)
			if _, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "kill -" + signal + " " + strconv.Itoa(pid)}); err != nil {
				t.Fatal(err)
			}
			data := make([]byte, 100<<10)
			rand.Read(data)
			start := time.Now()
			if err := p.WriteFile(ctxT(t), sb.ID, "f.bin", data, 0); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > channelCheckTimeout+10*time.Second {
				t.Errorf("the write took %v", d)
			}
			checkFile(t, p, sb.ID, "f.bin", data)
			noTemps(t, p, sb.ID)
			if again := waitChannel(t, p, sb.ID); again == c || again.exec == c.exec {
				t.Fatal("the broken channel is still in use")
			}
			rand.Read(data)
			if err := p.WriteFile(ctxT(t), sb.ID, "f.bin", data, 0); err != nil {
				t.Fatal(err)
			}
			checkFile(t, p, sb.ID, "f.bin", data)
		})
	}
}

// A line of stdin the API refuses ends the channel; the write in flight
// is done by command, once.
func TestFileChannelSendFails(t *testing.T) {
	fake, url := startFake(t, runloopfake.Options{})
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	c := waitChannel(t, p, sb.ID)
	fake.FailRequests(1, http.StatusInternalServerError, "send_std_in", "")
	if err := p.WriteFile(ctxT(t), sb.ID, "f", []byte("content"), 0); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, sb.ID, "f", []byte("content"))
	noTemps(t, p, sb.ID)
	select {
	case <-c.ch.Done():
	default:
		t.Error("the channel is still open")
	}
}

// After a channel broke with a place sent, the place by command moves
// the upload unless the helper already did: an upload that is gone was
// moved, and the target is left as it is.
func TestPlaceResumes(t *testing.T) {
	_, url := startFake(t, runloopfake.Options{})
	o := fakeOptions(url)
	o.NoChannel = true
	p := newDriver(t, o)
	sb := create(t, p, providers.CreateOptions{})
	ctx := context.Background()
	if err := p.WriteFile(ctx, sb.ID, "f", []byte("moved"), 0); err != nil {
		t.Fatal(err)
	}
	if err := p.placeByCommand(ctx, sb.ID, ".f.up", "f", 5, 0o644, true); err != nil {
		t.Fatalf("resumed place of a moved upload: %v", err)
	}
	checkFile(t, p, sb.ID, "f", []byte("moved"))
	if err := p.upload(ctx, sb.ID, ".f.up", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if err := p.placeByCommand(ctx, sb.ID, ".f.up", "f", 5, 0o644, true); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, sb.ID, "f", []byte("again"))
	noTemps(t, p, sb.ID)
}

// A write cut off while its upload is still landing returns at once and
// leaves nothing: the upload is removed only once the API answered it.
func TestCutWriteRemovesItsUploadOnceLanded(t *testing.T) {
	fake, url := startFake(t, runloopfake.Options{})
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	if err := p.WriteFile(ctxT(t), sb.ID, "f", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	const landing = 800 * time.Millisecond
	fake.SlowUploads(1, landing)
	ctx, cancel := context.WithTimeout(ctxT(t), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.WriteFile(ctx, sb.ID, "f", []byte("new content"), 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the cut write: %v", err)
	}
	if d := time.Since(start); d > landing/2 {
		t.Errorf("the cut write returned after %v, not at once", d)
	}
	time.Sleep(landing + 500*time.Millisecond) // landed, and removed after
	noTemps(t, p, sb.ID)
	checkFile(t, p, sb.ID, "f", []byte("old"))
}
