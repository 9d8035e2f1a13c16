package supervisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor/internal/helper"
)

// The helper serving base64 lines, for a transport that carries text only:
// output comes back byte-exact, and nothing but base64 lines goes out.
func TestTextChannel(t *testing.T) {
	ch, _, _ := serveHelperWith(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	var out bytes.Buffer
	script := `printf 'a\000b\377\n'; head -c 200000 /dev/urandom >rand; cat rand; cat >&2; exit 4`
	code, errOut, err := ch.Run(ctx, dir, []string{"/bin/sh", "-c", script}, strings.NewReader("to stderr\n"), &out)
	rand, _ := os.ReadFile(filepath.Join(dir, "rand"))
	if err != nil || code != 4 || errOut != "to stderr\n" || !bytes.Equal(out.Bytes(), append([]byte("a\x00b\xff\n"), rand...)) {
		t.Fatalf("exit %d, stderr %q, %v; stdout %d bytes (want %d)", code, errOut, err, out.Len(), 5+len(rand))
	}
}

// What the helper's output looks like on the wire in text mode.
func TestTextChannelWire(t *testing.T) {
	var wire bytes.Buffer
	w := helper.LineWriter{W: &wire}
	if err := helper.WriteFrame(w, helper.FrameStdout, 7, []byte("\x00\xff hi")); err != nil {
		t.Fatal(err)
	}
	line := wire.String()
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 || strings.ContainsAny(strings.TrimSuffix(line, "\n"), " \r\x00") {
		t.Fatalf("not one base64 line: %q", line)
	}
	kind, stream, payload, err := helper.ReadFrame(helper.NewLineReader(strings.NewReader("\n" + strings.TrimSuffix(line, "\n") + "\r\n")))
	if err != nil || kind != helper.FrameStdout || stream != 7 || string(payload) != "\x00\xff hi" {
		t.Fatalf("read back %q %d %q %v", kind, stream, payload, err)
	}
	for _, bad := range []string{"not base64!\n", strings.Repeat("A", helper.MaxLine+8) + "\n"} {
		if _, err := io.ReadAll(helper.NewLineReader(strings.NewReader(bad))); !errors.Is(err, ErrChannelLine) {
			t.Errorf("%.20q...: %v, want ErrChannelLine", bad, err)
		}
	}
	if _, err := io.ReadAll(helper.NewLineReader(strings.NewReader("QUJD"))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a line cut off: %v", err)
	}
}

// The helper's file checks, answered in the serving process: what stat and
// lstat say, and what place does and refuses.
func TestChannelFileChecks(t *testing.T) {
	ch, _, self := serveHelperWith(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	op := func(args ...string) (int, string, string) {
		t.Helper()
		var out bytes.Buffer
		code, errOut, err := ch.Run(ctx, dir, append([]string{self}, args...), nil, &out)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return code, out.String(), errOut
	}
	os.WriteFile(filepath.Join(dir, "f"), []byte("12345"), 0o640)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	os.Symlink("f", filepath.Join(dir, "link"))
	os.Symlink("nothing", filepath.Join(dir, "dangling"))
	syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600)
	var st syscall.Stat_t
	syscall.Stat(filepath.Join(dir, "f"), &st)
	mtime := strconv.FormatInt(int64(st.Mtim.Sec), 10)
	for _, tc := range []struct{ mode, path, want string }{
		{"stat", "f", "81a0 5 " + mtime},
		{"stat", filepath.Join(dir, "f"), "81a0 5 " + mtime},
		{"stat", "link", "81a0 5 " + mtime},
		{"lstat", "link", "a1ff 1 "},
		{"stat", "dangling", "dangling"},
		{"lstat", "dangling", "a1ff 7 "},
		{"stat", "missing", "missing"},
		{"lstat", "f/under-a-file", "missing"},
		{"stat", "d", "41ed "},
		{"stat", "fifo", "11"},
	} {
		code, out, _ := op(tc.mode, tc.path)
		if code != 0 || !strings.HasPrefix(out, tc.want) || !strings.HasSuffix(out, "\n") {
			t.Errorf("%s %s: exit %d, %q; want %q...", tc.mode, tc.path, code, out, tc.want)
		}
	}

	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Refusals leave the upload where it is, for the driver to remove.
	write(".up1", "abc")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"place", ".up1", "f", "4", "644"}, "the upload arrived short"},
		{[]string{"place", ".up1", "d", "3", "644"}, "is a directory"},
		{[]string{"place", ".nothing", "f", "3", "644"}, "the upload is not there: no such file or directory"},
		{[]string{"place", "link", "g", "1", "644"}, "the upload is not a regular file"},
		{[]string{"place", ".up1", "no/such/dir/f", "3", "644"}, "cannot move the upload into place: no such file or directory"},
	} {
		if code, _, errOut := op(tc.args...); code != 1 || errOut != tc.want+"\n" {
			t.Errorf("%v: exit %d, %q; want exit 1, %q", tc.args, code, errOut, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".up1")); err != nil {
		t.Errorf("a refused place removed the upload: %v", err)
	}
	for _, bad := range [][]string{{"place", ".up1", "f", "x", "644"}, {"place", ".up1", "f", "3", "9"}, {"place", ".up1", "f"}, {"stat"}} {
		if code, _, errOut := op(bad...); code != 2 || !strings.HasPrefix(errOut, "usage: ") {
			t.Errorf("%v: exit %d, %q; want a usage error", bad, code, errOut)
		}
	}
	// A place moves the upload over the target with the mode asked, over a
	// symlink (replaced, not followed) too.
	if code, _, errOut := op("place", ".up1", "f", "3", "600"); code != 0 {
		t.Fatalf("place: exit %d, %q", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "abc" {
		t.Errorf("f holds %q, %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "f")); fi.Mode().Perm() != 0o600 {
		t.Errorf("f has mode %v, want 0600", fi.Mode())
	}
	if _, err := os.Lstat(filepath.Join(dir, ".up1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the upload is still there: %v", err)
	}
	write(".up2", "new")
	if code, _, errOut := op("place", filepath.Join(dir, ".up2"), "dangling", "3", "644"); code != 0 {
		t.Fatalf("place over a symlink: exit %d, %q", code, errOut)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "dangling")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("the symlink was not replaced by the file: %v %v", fi, err)
	}

	// The same modes run as a command, relative to the working directory.
	cmd := exec.Command(self, "stat", "f")
	cmd.Dir = dir
	b, err := cmd.Output()
	if f := strings.Fields(string(b)); err != nil || len(f) != 3 || f[0] != "8180" || f[1] != "3" {
		t.Errorf("stat as a command: %q, %v", b, err)
	}
}
