package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stdioPeer drives the server binary over stdio with hand-written JSON-RPC,
// so a test controls exactly what is sent and when stdin closes.
type stdioPeer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *syncBuffer
	exited chan struct{}

	mu      sync.Mutex
	waiting map[int64]chan map[string]any
}

func startStdioPeer(t *testing.T, state string, env ...string) *stdioPeer {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append([]string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &stdioPeer{cmd: cmd, stdin: stdin, stderr: &syncBuffer{}, exited: make(chan struct{}), waiting: map[int64]chan map[string]any{}}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			id, ok := m["id"].(float64)
			if !ok {
				continue
			}
			r.mu.Lock()
			ch := r.waiting[int64(id)]
			r.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
		cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("server stderr:\n%s", r.stderr)
		}
	})
	r.send(t, 0, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	r.wait(t, 0, 10*time.Second)
	r.write(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return r
}

func (r *stdioPeer) write(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(r.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// send writes a request with the given id; wait takes its response.
func (r *stdioPeer) send(t *testing.T, id int64, line string) {
	t.Helper()
	r.mu.Lock()
	r.waiting[id] = make(chan map[string]any, 1)
	r.mu.Unlock()
	r.write(t, line)
}

func (r *stdioPeer) call(t *testing.T, id int64, tool string, args map[string]any) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": args}})
	r.send(t, id, string(b))
}

func (r *stdioPeer) wait(t *testing.T, id int64, within time.Duration) map[string]any {
	t.Helper()
	r.mu.Lock()
	ch := r.waiting[id]
	r.mu.Unlock()
	select {
	case m := <-ch:
		return m
	case <-time.After(within):
		t.Fatalf("no response to request %d within %v", id, within)
		return nil
	}
}

// With five long commands running on one stdio session, a sixth call is
// answered at once: calls run side by side, not queued behind each other.
func TestStdioCheapCallDoesNotWaitBehindLongOnes(t *testing.T) {
	r := startStdioPeer(t, t.TempDir())
	r.call(t, 1, "run_command", map[string]any{"command": "true"}) // the sandbox exists before the race
	r.wait(t, 1, 30*time.Second)
	for id := int64(10); id < 15; id++ {
		r.call(t, id, "run_command", map[string]any{"command": "sleep 30", "wait_seconds": 40})
	}
	time.Sleep(500 * time.Millisecond) // let the five start
	start := time.Now()
	r.call(t, 20, "run_command", map[string]any{"command": "echo quick"})
	resp := r.wait(t, 20, 10*time.Second)
	if took := time.Since(start); took > time.Second {
		t.Errorf("echo behind five sleeps answered in %v, want under 1s", took)
	}
	if !strings.Contains(fmt.Sprint(resp["result"]), "quick") {
		t.Errorf("echo: %v", resp)
	}
}

// A line over the size limit gets a JSON-RPC error naming the limit (with
// the request's id, so the client's call ends), and the server goes on.
func TestStdioOverlongLineIsAnError(t *testing.T) {
	r := startStdioPeer(t, t.TempDir(), "MCP_SANDBOX_MAX_BODY_BYTES=1MiB")
	big := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"x","content":"` + strings.Repeat("A", 3<<20) + `"}}}`
	r.send(t, 7, big)
	resp := r.wait(t, 7, 10*time.Second)
	msg := fmt.Sprint(resp["error"])
	if !strings.Contains(msg, "over this server's limit of 1048576 bytes") {
		t.Errorf("overlong line: %v", msg)
	}
	r.send(t, 8, `{"jsonrpc":"2.0","id":8,"method":"ping"}`)
	if resp := r.wait(t, 8, 10*time.Second); resp["result"] == nil {
		t.Errorf("ping after an overlong line: %v", resp)
	}
}

// A call blocked where cancelling cannot reach it (open(2) of a FIFO no one
// writes) and a long command do not keep the server from exiting after
// stdin EOF or SIGTERM: it exits within the grace period and ends the
// session, whose sandbox goes with it.
func TestStdioExitIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the shutdown grace period")
	}
	for _, stop := range []string{"eof", "sigterm"} {
		t.Run(stop, func(t *testing.T) {
			state := t.TempDir()
			r := startStdioPeer(t, state)
			r.call(t, 1, "run_command", map[string]any{"command": "mkfifo pipe"})
			r.wait(t, 1, 30*time.Second)
			r.call(t, 2, "read_file", map[string]any{"path": "pipe"})
			r.call(t, 3, "run_command", map[string]any{"command": "sleep 1000", "wait_seconds": 50, "timeout_seconds": 1000})
			time.Sleep(500 * time.Millisecond)
			start := time.Now()
			if stop == "eof" {
				r.stdin.Close()
			} else {
				r.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-r.exited:
			case <-time.After(shutdownGrace + 15*time.Second):
				t.Fatalf("server still running %v after %s", time.Since(start), stop)
			}
			t.Logf("exited %v after %s", time.Since(start).Round(time.Millisecond), stop)
			if code := r.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit code %d", code)
			}
			if dirs := sandboxDirs(t, state); len(dirs) != 0 {
				t.Errorf("sandboxes left after exit: %v", dirs)
			}
			if logs := r.stderr.String(); strings.Contains(logs, "abandoning") && !strings.Contains(logs, "read_file") {
				t.Errorf("the abandoned calls are not named:\n%s", logs)
			}
		})
	}
}

// The line limiter passes lines through unchanged and drops an overlong
// one while it streams, so its memory stays near the limit.
func TestLineLimiter(t *testing.T) {
	const max = 1 << 20
	const (
		idFirst = `{"jsonrpc":"2.0","id":42,"params":{"x":"`
		idLater = `{"params":{"id":1,"a":[1,{"b":2}]},"id":"s-1","x":"`
	)
	type dropped struct {
		id   any
		size int64
	}
	tests := []struct {
		name    string
		in      io.Reader
		want    string
		dropped []dropped
	}{
		{"lines", strings.NewReader("a\nbb\n\nccc"), "a\nbb\n\nccc", nil},
		{"at the limit", strings.NewReader(strings.Repeat("x", max-1) + "\nz\n"), strings.Repeat("x", max-1) + "\nz\n", nil},
		{"over, numeric id", io.MultiReader(strings.NewReader(idFirst), strings.NewReader(strings.Repeat("x", 3*max)+"\"}}\nok\n")),
			"ok\n", []dropped{{int64(42), int64(len(idFirst)) + 3*max + 4}}},
		{"over, id after params", strings.NewReader(idLater + strings.Repeat("x", max) + "\n"), "",
			[]dropped{{"s-1", int64(len(idLater)) + max + 1}}},
		{"over, no newline at the end", strings.NewReader("a\n" + strings.Repeat("x", max+1)), "a\n", []dropped{{nil, max + 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []dropped
			l := newLineLimiter(tt.in, max, func(id any, size int64) { got = append(got, dropped{id, size}) })
			out, err := io.ReadAll(l)
			if err != nil || string(out) != tt.want {
				t.Errorf("read %.40q (%d bytes), %v; want %.40q", out, len(out), err, tt.want)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.dropped) {
				t.Errorf("dropped %v, want %v", got, tt.dropped)
			}
			select {
			case <-l.ended:
			default:
				t.Error("ended is not closed at EOF")
			}
		})
	}
}

// A 100 MB line costs about the limit in memory, not its own size.
func TestLineLimiterMemory(t *testing.T) {
	const max = 8 << 20
	line := io.MultiReader(strings.NewReader(`{"id":1,"x":"`), &repeatReader{n: 100 << 20}, strings.NewReader("\"}\n"))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l := newLineLimiter(line, max, func(any, int64) {})
	if n, _ := io.Copy(io.Discard, l); n != 0 {
		t.Fatalf("passed on %d bytes of an overlong line", n)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*max {
		t.Errorf("a 100 MB line allocated %d MiB, want at most 3x the %d MiB limit", alloc>>20, max>>20)
	}
}

type repeatReader struct{ n int }

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.n -= n
	return n, nil
}
