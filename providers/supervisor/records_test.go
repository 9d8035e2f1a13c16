package supervisor

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Records come from inside the sandbox, where the sandboxed code can write
// anything into them: what does not parse is left out, never trusted.
func TestParseRecords(t *testing.T) {
	const good = "proc 7\nspec 1000000000 1 0 10 5 tok \"echo hi\"\nstate 1 2 3 100 0\nexit 3 1 150\n" +
		"seg /tmp/.mcp-sandbox-procs/7/stdout.0 10\nseg /tmp/.mcp-sandbox-procs/7/stdout.20 4\nseg /tmp/.mcp-sandbox-procs/7/stderr.0 2\n"
	for _, tc := range []struct {
		name string
		in   string
		want []string // IDs
	}{
		{"good", good, []string{"7"}},
		{"no spec", "proc 8\nstate 1 2 3 4 0\nrunning\n", nil},
		{"bad id", "proc ../x\nspec 1 0 0 1 1 t \"x\"\n", nil},
		{"short spec", "proc 9\nspec 1 0 0\n", nil},
		{"garbage between", "junk\n" + good + "seg nonsense\nseg /x/99/stdout.0 5\nexit x y z\n", []string{"7"}},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := parseRecords([]byte(tc.in))
			var ids []string
			for _, r := range recs {
				ids = append(ids, r.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("records %v, want %v", ids, tc.want)
			}
		})
	}
	in := parseRecords([]byte(good + "exit x y z\n"))[0]
	if in.Command != "echo hi" || in.Running || in.ExitCode != 3 || !in.TimedOut || in.StdoutBytes != 24 || in.StderrBytes != 2 ||
		in.EndedAt.Sub(in.StartedAt) != 500*time.Millisecond || in.StdinOpen {
		t.Errorf("parsed %+v", in)
	}
}

func TestFrameWriter(t *testing.T) {
	for _, tc := range []struct {
		name           string
		stream         string
		stdout, stderr string
		proc           string
		bad            bool
	}{
		{"frames", "P 3\no 0 5\nhello" + "e 0 3\nerr" + "o 5 1\n!x\nproc 3\n", "hello!", "err", "3", false},
		{"split anywhere", "P 1\no 0 2\nab", "ab", "", "1", false},
		{"unknown header", "P 1\nz 1 2\n", "", "", "1", true},
		{"bad length", "P 1\no 0 -4\n", "", "", "1", true},
		{"bad process", "P ../1\n", "", "", "", true},
		{"endless header", "P 1\n" + strings.Repeat("o", 5000), "", "", "1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			w := &frameWriter{stdout: &out, stderr: &errOut, started: make(chan struct{})}
			var err error
			// One byte at a time: frames must survive any split.
			for i := 0; i < len(tc.stream) && err == nil; i++ {
				_, err = w.Write([]byte{tc.stream[i]})
			}
			if (err != nil) != tc.bad || out.String() != tc.stdout || errOut.String() != tc.stderr || w.procID() != tc.proc {
				t.Fatalf("err %v, stdout %q, stderr %q, proc %q", err, out.String(), errOut.String(), w.procID())
			}
		})
	}
}
