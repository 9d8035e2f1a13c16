package fakebox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newBox(t *testing.T) (*Boxes, *Box) {
	t.Helper()
	bs, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	b, err := bs.Create(map[string]string{"BOX_VAR": "box"})
	if err != nil {
		t.Fatal(err)
	}
	return bs, b
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestRunStreamsOutputEnvCwdAndExitCode(t *testing.T) {
	_, b := newBox(t)
	os.Mkdir(filepath.Join(b.Home, "sub"), 0o755)
	var out, errOut bytes.Buffer
	exit, err := b.Run(context.Background(), Spec{
		Argv: sh(`echo "$BOX_VAR $CALL_VAR $(pwd)"; echo oops >&2; test -z "$SECRET_OF_THE_TEST"; exit 3`),
		Cwd:  "sub", Env: map[string]string{"CALL_VAR": "call"}, Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 3 || out.String() != "box call "+filepath.Join(b.Home, "sub")+"\n" || errOut.String() != "oops\n" {
		t.Fatalf("exit %+v, stdout %q, stderr %q", exit, out.String(), errOut.String())
	}
}

func TestStdinAndSignals(t *testing.T) {
	_, b := newBox(t)
	var out bytes.Buffer
	p, err := b.Start(Spec{Argv: sh("cat"), Stdin: true, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(p.Stdin, "piped")
	p.Stdin.Close()
	if exit := p.Wait(); exit.Code != 0 || out.String() != "piped" {
		t.Fatalf("cat: %+v %q", exit, out.String())
	}
	p, err = b.Start(Spec{Argv: sh("sleep 100")})
	if err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGTERM)
	if exit := p.Wait(); exit.Signal != syscall.SIGTERM {
		t.Fatalf("after TERM: %+v", exit)
	}
}

func TestCancelKillsTheTreeAndRemoveKillsEscapedChildren(t *testing.T) {
	bs, b := newBox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := b.Run(ctx, Spec{Argv: sh("sleep 100 & wait")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
	var pid bytes.Buffer
	if _, err := b.Run(context.Background(), Spec{Argv: sh("setsid sleep 100 >/dev/null 2>&1 & echo $!"), Stdout: &pid}); err != nil {
		t.Fatal(err)
	}
	bs.Remove(b.ID)
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strings.TrimSpace(pid.String()) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the setsid child %s survived Remove", pid.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(b.Home); !os.IsNotExist(err) {
		t.Errorf("Remove left %s: %v", b.Home, err)
	}
	if _, err := b.Start(Spec{Argv: sh("true")}); !errors.Is(err, ErrKilled) {
		t.Errorf("start after remove: %v", err)
	}
}

func TestPathsStayInside(t *testing.T) {
	_, b := newBox(t)
	for _, p := range []string{"../x", "/etc/passwd", b.Home + "/../x"} {
		if _, _, err := b.Resolve(p); err == nil {
			t.Errorf("Resolve(%q) left the sandbox", p)
		}
	}
	if rel, _, err := b.Resolve(b.Home + "/a/b"); err != nil || rel != "a/b" {
		t.Errorf("absolute inside: %q %v", rel, err)
	}
	os.Symlink("/etc", filepath.Join(b.Home, "link"))
	if err := b.WriteFile("link/escape", strings.NewReader("x"), 0); err == nil {
		t.Error("a write through a symlink left the sandbox")
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection cut")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestWriteFileIsAtomic(t *testing.T) {
	_, b := newBox(t)
	if err := b.WriteFile("dir/f", strings.NewReader("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFile("dir/f", &failingReader{n: 10}, 0); err == nil {
		t.Fatal("a write whose body failed succeeded")
	}
	data, _ := os.ReadFile(filepath.Join(b.Home, "dir/f"))
	ents, _ := os.ReadDir(filepath.Join(b.Home, "dir"))
	if string(data) != "old" || len(ents) != 1 {
		t.Fatalf("after a cut write: %q, %d entries", data, len(ents))
	}
}

func TestFaults(t *testing.T) {
	var f Faults
	f.FailRequests(1, 429, "/v1/", "2")
	if st, ra := f.TakeRequest("/other"); st != 0 || ra != "" {
		t.Errorf("a request elsewhere failed: %d %q", st, ra)
	}
	if st, ra := f.TakeRequest("/v1/devboxes"); st != 429 || ra != "2" {
		t.Errorf("first request: %d %q", st, ra)
	}
	if st, _ := f.TakeRequest("/v1/devboxes"); st != 0 {
		t.Errorf("second request failed too: %d", st)
	}

	for _, tc := range []struct {
		name        string
		fail, stuck int
		lost        bool
		want        [3]string // each create: status/lost/stuck
	}{
		{"stuck alone", 0, 2, false, [3]string{"0 false true", "0 false true", "0 false false"}},
		{"a failed create makes nothing to stick", 1, 1, false, [3]string{"503 false false", "0 false true", "0 false false"}},
		{"a lost answer made its sandbox, which sticks", 1, 1, true, [3]string{"503 true true", "0 false false", "0 false false"}},
	} {
		var f Faults
		f.FailCreates(tc.fail, 503, tc.lost)
		f.StickCreates(tc.stuck)
		for i, want := range tc.want {
			st, lost, stuck := f.TakeCreate()
			if got := fmt.Sprint(st, lost, stuck); got != want {
				t.Errorf("%s: create %d: %s, want %s", tc.name, i, got, want)
			}
		}
	}

	f.Arm("cut", 1, 5)
	if f.TakeCut("cut") != 5 || f.TakeCut("cut") != -1 || f.TakeCut("other") != -1 {
		t.Error("Arm applies to exactly n takes of its kind")
	}
	f.SetLatency(time.Second)
	if f.Latency() != time.Second {
		t.Error("SetLatency is not kept")
	}
}
