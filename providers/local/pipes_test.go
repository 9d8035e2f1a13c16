package local

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// slowWriter holds its first write for a while, as a starved goroutine
// would: the command exits and the grace for leftover children runs out
// before the copy reads again.
type slowWriter struct {
	mu    sync.Mutex
	delay time.Duration
	buf   bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	d := w.delay
	w.delay = 0
	w.buf.Write(p)
	w.mu.Unlock()
	time.Sleep(d)
	return len(p), nil
}

func (w *slowWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runBoth runs a command through Exec and through RunProcess, the two
// foreground paths.
var runBoth = []struct {
	name string
	run  func(p *Provider, id, cmd string, stdout *slowWriter) (providers.ExecResult, error)
}{
	{"Exec", func(p *Provider, id, cmd string, stdout *slowWriter) (providers.ExecResult, error) {
		return p.Exec(context.Background(), id, providers.ExecRequest{Command: cmd, Stdout: stdout, Stderr: &bytes.Buffer{}})
	}},
	{"RunProcess", func(p *Provider, id, cmd string, stdout *slowWriter) (providers.ExecResult, error) {
		res, err := p.RunProcess(context.Background(), id, providers.RunRequest{
			ProcessSpec: providers.ProcessSpec{Command: cmd}, Wait: time.Minute, KeepAfter: 1 << 20, Stdout: stdout})
		return res.ExecResult, err
	}},
}

func TestOutputWrittenBeforeExitArrivesFromALateReader(t *testing.T) {
	p, sb := newSandbox(t)
	for _, tc := range runBoth {
		t.Run(tc.name, func(t *testing.T) {
			// The copy reads "first", then is held past the grace while the
			// command writes the rest and exits.
			stdout := &slowWriter{delay: 3 * waitDelay}
			res, err := tc.run(p, sb.ID, "printf first; sleep 0.05; printf second; printf ' and third'", stdout)
			if err != nil {
				t.Fatal(err)
			}
			if got := stdout.String(); got != "firstsecond and third" || res.ExitCode != 0 || res.OutputCut {
				t.Errorf("got %q, exit %d, output cut %v; want all the output, exit 0, nothing cut", got, res.ExitCode, res.OutputCut)
			}
		})
	}
}

func TestLeftoverChildrenOutputIsCutAndSaidSo(t *testing.T) {
	p, sb := newSandbox(t)
	for _, tc := range runBoth {
		t.Run(tc.name, func(t *testing.T) {
			tests := []struct {
				cmd  string
				want string
				cut  bool
			}{
				{"echo mine", "mine\n", false},
				{"echo mine; (sleep 3; echo late) &", "mine\n", true},
				// A child that closes its output does not count as cut.
				{"echo mine; sleep 3 >/dev/null 2>&1 &", "mine\n", false},
			}
			for _, tt := range tests {
				stdout := &slowWriter{}
				start := time.Now()
				res, err := tc.run(p, sb.ID, tt.cmd, stdout)
				if err != nil {
					t.Fatal(err)
				}
				if got := stdout.String(); got != tt.want || res.OutputCut != tt.cut || time.Since(start) > 2*time.Second {
					t.Errorf("%q: got %q, output cut %v after %v; want %q, cut %v, well before the child ends",
						tt.cmd, got, res.OutputCut, time.Since(start), tt.want, tt.cut)
				}
			}
		})
	}
}

func TestDrainBufferedTakesWhatThePipeHolds(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		closeW    bool
		wantEOF   bool
		wantBytes int
	}{
		{"empty, writer open", 0, false, false, 0},
		{"empty, writer gone", 0, true, true, 0},
		{"small, writer open", 100, false, false, 100},
		{"fills the pipe, writer gone", 64 << 10, true, true, 64 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			if _, err := w.Write([]byte(strings.Repeat("x", tc.size))); err != nil {
				t.Fatal(err)
			}
			if tc.closeW {
				w.Close()
			}
			// A passed deadline, as finishPipes leaves it: the drain must
			// read regardless.
			r.SetReadDeadline(time.Now())
			var got int
			eof := drainBuffered(r, make([]byte, 4096), func(b []byte) { got += len(b) })
			if got != tc.wantBytes || eof != tc.wantEOF {
				t.Errorf("drained %d bytes, eof %v; want %d, eof %v", got, eof, tc.wantBytes, tc.wantEOF)
			}
		})
	}
}

// One writer for both streams gets them through one pipe, in order, as
// os/exec does.
func TestOneWriterForBothStreamsKeepsTheirOrder(t *testing.T) {
	p, sb := newSandbox(t)
	var both bytes.Buffer
	res, err := p.Exec(context.Background(), sb.ID, providers.ExecRequest{
		Command: "echo 1; echo 2 >&2; echo 3; echo 4 >&2", Stdout: &both, Stderr: &both})
	if err != nil || res.ExitCode != 0 || both.String() != "1\n2\n3\n4\n" {
		t.Errorf("got %q, %+v, %v; want the four lines in order", both.String(), res, err)
	}
}
