package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// serveHelper runs the embedded helper as "serve" on this machine and
// returns a Channel to it.
func serveHelper(t *testing.T) (*Channel, *exec.Cmd) {
	t.Helper()
	ch, cmd, _ := serveHelperWith(t, false)
	return ch, cmd
}

// serveHelperWith runs it as "serve", or "serve -enc b64" when text is
// set, and returns the helper's path too.
func serveHelperWith(t *testing.T, text bool) (*Channel, *exec.Cmd, string) {
	t.Helper()
	bin := helperBins[runtime.GOARCH]
	if runtime.GOOS != "linux" || bin == nil {
		t.Skip("the helper runs on Linux amd64 and arm64")
	}
	raw, _ := bin.load()
	path := filepath.Join(t.TempDir(), "helper")
	if err := os.WriteFile(path, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "serve")
	if text {
		cmd.Args = append(cmd.Args, "-enc", "b64")
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ch *Channel
	if text {
		ch = NewTextChannel(out, in)
	} else {
		ch = NewChannel(out, in)
	}
	t.Cleanup(func() {
		ch.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return ch, cmd, path
}

func TestChannelRuns(t *testing.T) {
	ch, _ := serveHelper(t)
	ctx := context.Background()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, script, stdin string
		code                int
		out, errOut         string
	}{
		{"status and streams", "echo hi; echo oops >&2; exit 3", "", 3, "hi\n", "oops\n"},
		{"stdin", "cat; echo", "abc", 0, "abc\n", ""},
		{"workdir", "pwd", "", 0, dir + "\n", ""},
		{"stdin never read", "exit 0", strings.Repeat("x", 4<<20), 0, "", ""},
		{"killed by a signal", "kill -9 $$", "", 137, "", ""},
		{"large output", "head -c 3000000 /dev/zero | tr '\\0' a", "", 0, strings.Repeat("a", 3000000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			var stdin *strings.Reader
			if tc.stdin != "" {
				stdin = strings.NewReader(tc.stdin)
			}
			var code int
			var errOut string
			var err error
			if stdin != nil {
				code, errOut, err = ch.Run(ctx, dir, []string{"/bin/sh", "-c", tc.script}, stdin, &out)
			} else {
				code, errOut, err = ch.Run(ctx, dir, []string{"/bin/sh", "-c", tc.script}, nil, &out)
			}
			if err != nil || code != tc.code || out.String() != tc.out || errOut != tc.errOut {
				t.Fatalf("exit %d, stdout %d bytes %.40q, stderr %q, %v; want exit %d, %.40q, %q", code, out.Len(), out.String(), errOut, err, tc.code, tc.out, tc.errOut)
			}
		})
	}
	if _, _, err := ch.Run(ctx, dir, []string{"/no/such/program"}, nil, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing program: %v", err)
	}
}

// Commands share the channel at once; a cancelled one lets the others be.
func TestChannelConcurrentAndCancelled(t *testing.T) {
	ch, _ := serveHelper(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			want := fmt.Sprintf("%d\n", i)
			code, _, err := ch.Run(context.Background(), dir, []string{"/bin/sh", "-c", "sleep 0.$((RANDOM % 3)) 2>/dev/null; echo " + want[:len(want)-1]}, nil, &out)
			if err != nil || code != 0 || out.String() != want {
				t.Errorf("run %d: exit %d, %q, %v", i, code, out.String(), err)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := ch.Run(ctx, dir, []string{"sleep", "5"}, nil, nil); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled run: %v after %v", err, time.Since(start))
	}
	wg.Wait()

	// An abandoned command meets a broken pipe at its next write, as one
	// whose exec is dropped does: it does not run on to its end.
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	script := "i=0; while [ $i -lt 40 ]; do echo tick; i=$((i+1)); sleep 0.05; done; touch finished"
	if _, _, err := ch.Run(ctx, dir, []string{"/bin/sh", "-c", script}, nil, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned run: %v", err)
	}
	time.Sleep(3 * time.Second)
	if _, err := os.Stat(filepath.Join(dir, "finished")); err == nil {
		t.Error("the abandoned command ran on to its end")
	}
}

// A helper that dies (killed from inside the sandbox) fails what was in
// flight, and the channel says it is done.
func TestChannelHelperKilled(t *testing.T) {
	ch, cmd := serveHelper(t)
	errc := make(chan error, 1)
	go func() {
		_, _, err := ch.Run(context.Background(), t.TempDir(), []string{"sleep", "5"}, nil, nil)
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Kill()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrChannelClosed) {
			t.Errorf("in flight: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not end with its channel")
	}
	select {
	case <-ch.Done():
	case <-time.After(time.Second):
		t.Error("Done is not closed")
	}
	if _, _, err := ch.Run(context.Background(), "/", []string{"true"}, nil, nil); !errors.Is(err, ErrChannelClosed) {
		t.Errorf("after: %v", err)
	}
}

// channelRunner is a sandbox on this machine whose argv runs go through a
// channel to the helper serving in it.
type channelRunner struct {
	*hostRunner
	ch *Channel
}

func (c channelRunner) RunArgv(ctx context.Context, id string, argv []string, stdin io.Reader, stdout io.Writer) (int, string, error) {
	return c.ch.Run(ctx, c.dir, argv, stdin, stdout)
}

// The supervisor over a channel: the helper starts and follows processes
// in its own process, with the answers the scripts give.
func TestSupervisorOverChannel(t *testing.T) {
	ctx := context.Background()
	h, s := supervisorOnHost(t)

	var stdout, stderr bytes.Buffer
	res, err := s.RunProcess(ctx, "box", providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "cat; echo oops >&2; exit 3", Stdin: []byte("hi\n")},
		Wait: 10 * time.Second, KeepAfter: 1000, Stdout: &stdout, Stderr: &stderr})
	if err != nil || res.ExitCode != 3 || res.ProcessID != "" || stdout.String() != "hi\n" || stderr.String() != "oops\n" {
		t.Fatalf("RunProcess: %+v %q %q %v", res, stdout.String(), stderr.String(), err)
	}
	// The command's own environment and working directory.
	os.Mkdir(filepath.Join(h.dir, "it's here"), 0o755)
	stdout.Reset()
	res, err = s.RunProcess(ctx, "box", providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: `echo "$X"; pwd`, Env: map[string]string{"X": "it's $HOME"}, Cwd: "it's here"},
		Wait: 10 * time.Second, KeepAfter: 1000, Stdout: &stdout})
	if err != nil || res.ExitCode != 0 || stdout.String() != "it's $HOME\n"+filepath.Join(h.dir, "it's here")+"\n" {
		t.Fatalf("RunProcess with env and cwd: %+v %q %v", res, stdout.String(), err)
	}
	res, err = s.RunProcess(ctx, "box", providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "echo early; sleep 1; echo late"},
		Wait: 200 * time.Millisecond, KeepAfter: 1000, Stdout: io.Discard})
	if err != nil || !res.Running || res.ProcessID == "" {
		t.Fatalf("RunProcess past its wait: %+v %v", res, err)
	}
	info, err := s.WaitProcess(ctx, "box", res.ProcessID, 10*time.Second)
	if err != nil || info.Running || info.ExitCode != 0 || info.StdoutBytes != int64(len("early\nlate\n")) {
		t.Fatalf("WaitProcess: %+v %v", info, err)
	}
	started, err := s.StartProcess(ctx, "box", providers.ProcessSpec{Command: "exit 5"})
	if err != nil || started.ID == "" {
		t.Fatalf("StartProcess: %+v %v", started, err)
	}
	if info, err := s.WaitProcess(ctx, "box", started.ID, 10*time.Second); err != nil || info.ExitCode != 5 {
		t.Fatalf("WaitProcess: %+v %v", info, err)
	}
	if _, err := s.StartProcess(ctx, "box", providers.ProcessSpec{Command: "true", Cwd: "no/such/dir"}); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("StartProcess in a missing cwd: %v", err)
	}
}
