package providertest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func (h *harness) testFiles(t *testing.T) {
	sb := h.sandbox(t, providers.CreateOptions{Name: "files"})
	id := sb.ID

	t.Run("RoundTrips", func(t *testing.T) {
		t.Parallel()
		allBytes := make([]byte, 256)
		for i := range allBytes {
			allBytes[i] = byte(i)
		}
		tests := []struct {
			name string
			path string
			data []byte
		}{
			{"text", "rt/hello.txt", []byte("hello, world\nsecond line\n")},
			{"empty", "rt/empty", nil},
			{"every byte value", "rt/bytes.bin", allBytes},
			{"2 MiB random", "rt/random.bin", randBytes(2 << 20)},
			{"nested dirs are created", "rt/a/b/c/d/deep.txt", []byte("deep")},
			{"unicode name", "rt/ünïcødé ✓.txt", []byte("ok")},
			{"absolute path inside the workdir", path.Join(sb.Workdir, "rt/abs.txt"), []byte("abs")},
		}
		for _, tc := range tests {
			if err := h.p.WriteFile(testCtx(t), id, tc.path, tc.data, 0); err != nil {
				t.Errorf("%s: WriteFile(%q): %v", tc.name, tc.path, err)
				continue
			}
			got, fi := h.read(t, id, tc.path)
			if !bytes.Equal(got, tc.data) {
				t.Errorf("%s: read back %d bytes, want the %d written", tc.name, len(got), len(tc.data))
			}
			if fi.Type != providers.TypeFile || fi.Size != int64(len(tc.data)) {
				t.Errorf("%s: ReadFile info %+v, want a file of %d bytes", tc.name, fi, len(tc.data))
			}
		}
		// What WriteFile wrote, commands see at the same relative path.
		if out := h.sh(t, id, "cat rt/a/b/c/d/deep.txt"); out != "deep" {
			t.Errorf("a command reads %q from a file written as %q", out, "deep")
		}
	})

	t.Run("CommandOutputIsReadable", func(t *testing.T) {
		t.Parallel()
		h.sh(t, id, `mkdir -p made && printf 'by a command\000\377' > made/out.bin`)
		got, _ := h.read(t, id, "made/out.bin")
		if want := []byte("by a command\x00\xff"); !bytes.Equal(got, want) {
			t.Errorf("read %q, want %q", got, want)
		}
	})

	t.Run("OverwriteReplacesWholly", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		if err := h.p.WriteFile(ctx, id, "ow/file.txt", []byte("a long first version\n"), 0); err != nil {
			t.Fatal(err)
		}
		if err := h.p.WriteFile(ctx, id, "ow/file.txt", []byte("short"), 0); err != nil {
			t.Fatal(err)
		}
		if got, _ := h.read(t, id, "ow/file.txt"); string(got) != "short" {
			t.Errorf("after overwriting, read %q, want %q", got, "short")
		}
	})

	t.Run("Modes", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		if err := h.p.WriteFile(ctx, id, "modes/run.sh", []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if out := h.sh(t, id, "./modes/run.sh"); out != "ran\n" {
			t.Errorf("a script written with mode 0755 printed %q", out)
		}
		if fi := h.stat(t, id, "modes/run.sh"); fi.Mode.Perm() != 0o755 {
			t.Errorf("mode %v, want 0755", fi.Mode.Perm())
		}
		if err := h.p.WriteFile(ctx, id, "modes/plain.txt", []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		if fi := h.stat(t, id, "modes/plain.txt"); fi.Mode.Perm() != 0o644 {
			t.Errorf("mode 0 gave %v, want the default 0644", fi.Mode.Perm())
		}
		// The files belong to whoever runs commands: they can change them.
		if out := h.sh(t, id, "echo more >> modes/plain.txt && rm modes/run.sh && echo ok"); out != "ok\n" {
			t.Errorf("a command cannot modify files written through the API: %q", out)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		_, _, err := h.p.ReadFile(ctx, id, "missing/nope.txt")
		wantKind(t, "ReadFile of a missing file", err, providers.ErrNotFound, "missing/nope.txt")
		_, err = h.p.Stat(ctx, id, "missing/nope.txt")
		wantKind(t, "Stat of a missing file", err, providers.ErrNotFound, "missing/nope.txt")
		_, _, err = h.p.ListFiles(ctx, id, "missing-dir", 1, 10)
		wantKind(t, "ListFiles of a missing dir", err, providers.ErrNotFound, "missing-dir")
	})

	t.Run("WrongKinds", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		if err := h.p.WriteFile(ctx, id, "kinds/dir/file.txt", []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		_, _, err := h.p.ReadFile(ctx, id, "kinds/dir")
		wantKind(t, "ReadFile of a directory", err, providers.ErrInvalidArgument, "kinds/dir")
		err = h.p.WriteFile(ctx, id, "kinds/dir", []byte("x"), 0)
		wantKind(t, "WriteFile over a directory", err, providers.ErrInvalidArgument, "kinds/dir")
		if fi := h.stat(t, id, "kinds/dir"); fi.Type != providers.TypeDir {
			t.Errorf("writing over a directory changed it: %+v", fi)
		}
		err = h.p.WriteFile(ctx, id, "kinds/dir/file.txt/below", []byte("x"), 0)
		wantKind(t, "WriteFile below a file", err, providers.ErrInvalidArgument, "kinds/dir/file.txt/below")
		_, _, err = h.p.ListFiles(ctx, id, "kinds/dir/file.txt", 1, 10)
		wantKind(t, "ListFiles of a file", err, providers.ErrInvalidArgument, "kinds/dir/file.txt")
		err = h.p.WriteFile(ctx, id, "", []byte("x"), 0)
		wantKind(t, "WriteFile to an empty path", err, providers.ErrInvalidArgument, "")
		// Nothing is left behind by the refused writes.
		ents, _, err := h.p.ListFiles(ctx, id, "kinds", 5, 100)
		if err != nil {
			t.Fatal(err)
		}
		if got := paths(ents); !slices.Equal(got, []string{"dir", "dir/file.txt"}) {
			t.Errorf("after refused writes kinds/ holds %v", got)
		}
	})

	t.Run("StatTypes", func(t *testing.T) {
		t.Parallel()
		h.sh(t, id, "mkdir -p st/dir && printf 12345 > st/file && ln -s file st/link && ln -s /nowhere st/dangling")
		tests := []struct {
			path string
			typ  providers.FileType
			size int64
		}{
			{"st/dir", providers.TypeDir, -1},
			{"st/file", providers.TypeFile, 5},
			{"st/link", providers.TypeSymlink, -1},
			{"st/dangling", providers.TypeSymlink, -1},
		}
		for _, tc := range tests {
			fi := h.stat(t, id, tc.path)
			if fi.Type != tc.typ || (tc.size >= 0 && fi.Size != tc.size) || fi.ModTime.IsZero() {
				t.Errorf("Stat(%q) = %+v, want type %s", tc.path, fi, tc.typ)
			}
			if fi.Path != tc.path {
				t.Errorf("Stat(%q).Path = %q", tc.path, fi.Path)
			}
		}
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		h.sh(t, id, "mkdir -p ls/b/d ls/e && printf x > ls/a && printf yy > ls/b/c && printf z > ls/b/d/f && ln -s a ls/link")
		tests := []struct {
			name         string
			dir          string
			depth, limit int
			want         []string
			truncated    bool
		}{
			{"depth 1", "ls", 1, 100, []string{"a", "b", "e", "link"}, false},
			{"depth 2", "ls", 2, 100, []string{"a", "b", "b/c", "b/d", "e", "link"}, false},
			{"everything", "ls", 10, 100, []string{"a", "b", "b/c", "b/d", "b/d/f", "e", "link"}, false},
			{"depth 0 means 1", "ls", 0, 100, []string{"a", "b", "e", "link"}, false},
			{"limit cuts, in order", "ls", 10, 3, []string{"a", "b", "b/c"}, true},
			{"limit exactly met", "ls", 1, 4, []string{"a", "b", "e", "link"}, false},
			{"a subdirectory", "ls/b", 1, 100, []string{"c", "d"}, false},
			{"an empty directory", "ls/e", 3, 100, nil, false},
			{"absolute path", path.Join(sb.Workdir, "ls/b/d"), 1, 100, []string{"f"}, false},
		}
		for _, tc := range tests {
			ents, truncated, err := h.p.ListFiles(testCtx(t), id, tc.dir, tc.depth, tc.limit)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if got := paths(ents); !slices.Equal(got, tc.want) || truncated != tc.truncated {
				t.Errorf("%s: ListFiles(%q, %d, %d) = %v truncated=%v, want %v truncated=%v",
					tc.name, tc.dir, tc.depth, tc.limit, got, truncated, tc.want, tc.truncated)
			}
		}
		ents, _, err := h.p.ListFiles(testCtx(t), id, "ls", 3, 100)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]struct {
			typ  providers.FileType
			size int64
		}{"a": {providers.TypeFile, 1}, "b": {providers.TypeDir, -1}, "b/c": {providers.TypeFile, 2}, "link": {providers.TypeSymlink, -1}}
		for _, e := range ents {
			if w, ok := want[e.Path]; ok && (e.Type != w.typ || (w.size >= 0 && e.Size != w.size)) {
				t.Errorf("entry %+v, want type %s size %d", e, w.typ, w.size)
			}
		}
	})

	t.Run("SpecialFilesAnswerAtOnce", func(t *testing.T) {
		t.Parallel()
		h.testSpecialFiles(t, id)
	})

	t.Run("PathsThatLeaveTheSandbox", func(t *testing.T) {
		t.Parallel()
		h.testEscapes(t, sb)
	})
}

// testEscapes tries paths that climb out of the workdir. A driver may refuse
// them (ErrInvalidArgument: the local driver, whose workdir is a host
// directory) or resolve them inside its own isolated file system (a
// container's `..` is still the container); either way nothing on the host
// is read or written. Accepting a path is only honest when a command in the
// sandbox then sees the file at the same place, which the suite checks.
func (h *harness) testEscapes(t *testing.T, sb providers.Sandbox) {
	ctx := testCtx(t)
	id := sb.ID
	marker := "providertest-escape-" + randHex(6)
	h.sh(t, id, "mkdir -p esc/sub && ln -s / esc/root-link")

	// A file on the host the sandbox must not be able to read.
	hostDir := t.TempDir()
	hostSecret := filepath.Join(hostDir, marker+".host")
	if err := os.WriteFile(hostSecret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	climb := strings.Repeat("../", strings.Count(sb.Workdir, "/")+3)

	tests := []struct {
		name string
		path string
		// host is where a driver that wrote through to this machine's file
		// system would have put the file.
		host string
	}{
		{"parent", "../" + marker, path.Join(sb.Workdir, "..", marker)},
		{"climb to root", climb + "tmp/" + marker, "/tmp/" + marker},
		{"via a subdirectory", "esc/sub/../../../" + marker, path.Join(sb.Workdir, "..", marker)},
		{"absolute", "/tmp/" + marker + ".abs", "/tmp/" + marker + ".abs"},
		{"through a symlink", "esc/root-link/tmp/" + marker + ".link", "/tmp/" + marker + ".link"},
	}
	for _, tc := range tests {
		data := []byte("written via " + tc.name)
		err := h.p.WriteFile(ctx, id, tc.path, data, 0)
		if err != nil {
			wantKind(t, "WriteFile("+tc.path+")", err, providers.ErrInvalidArgument, "")
		} else {
			// Accepted: it must have landed inside the sandbox, where a
			// command resolving the same path from the workdir finds it.
			res, out, _ := h.run(t, id, providers.ExecRequest{Command: "cat " + providers.ShellQuote(tc.path)})
			if res.ExitCode != 0 || out != string(data) {
				t.Errorf("%s: WriteFile(%q) succeeded but a command in the sandbox reads %q (exit %d)", tc.name, tc.path, out, res.ExitCode)
			}
		}
		if fi, err := os.Lstat(tc.host); err == nil && !strings.HasPrefix(tc.host, sb.Workdir+"/") {
			t.Errorf("%s: WriteFile(%q) put a file on the host at %s (%v)", tc.name, tc.path, tc.host, fi.Mode())
			os.Remove(tc.host)
		}
	}

	for _, p := range []string{hostSecret, climb + strings.TrimPrefix(hostSecret, "/"), "esc/root-link" + hostSecret} {
		rc, _, err := h.p.ReadFile(ctx, id, p)
		if err != nil {
			if !errors.Is(err, providers.ErrInvalidArgument) && !errors.Is(err, providers.ErrNotFound) {
				t.Errorf("ReadFile(%q): want a refusal or not-found, got %v", p, err)
			}
			continue
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) == "host secret" {
			t.Errorf("ReadFile(%q) read a file from the host", p)
		}
	}
	if _, _, err := h.p.ListFiles(ctx, id, hostDir, 1, 10); err == nil {
		ents, _, _ := h.p.ListFiles(ctx, id, hostDir, 1, 10)
		for _, e := range ents {
			if strings.HasPrefix(e.Path, marker) {
				t.Errorf("ListFiles(%q) listed the host directory: %v", hostDir, paths(ents))
			}
		}
	} else if !errors.Is(err, providers.ErrInvalidArgument) && !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("ListFiles(%q): want a refusal or not-found, got %v", hostDir, err)
	}
	if _, err := os.Stat(hostSecret); err != nil {
		t.Errorf("the host file is gone: %v", err)
	}
}

// testSpecialFiles puts what sandboxed code can plant where a file is
// expected: a FIFO (whose open blocks until a writer comes), a symlink to a
// device, a device node and a socket. Every call answers at once: reads
// with a clear refusal, writes with a refusal or by replacing the entry.
func (h *harness) testSpecialFiles(t *testing.T, id string) {
	h.sh(t, id, "mkdir -p special && cd special && mkfifo fifo && ln -s /dev/zero zero-link")
	// A device node needs CAP_MKNOD, and a socket a tool that makes one:
	// each is tried, and checked where it could be made.
	h.run(t, id, providers.ExecRequest{Command: "cd special && mknod null c 1 3 2>/dev/null; " +
		`perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => "sock", Listen => 1) or exit 1' 2>/dev/null || ` +
		`python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")' 2>/dev/null; true`})
	present := strings.Fields(h.sh(t, id, `cd special && for f in fifo zero-link null sock; do if [ -e $f ] || [ -L $f ]; then echo $f; fi; done`))
	slices.Sort(present)
	if !slices.Contains(present, "null") || !slices.Contains(present, "sock") {
		t.Logf("checked only %v (no mknod or no tool to make a socket in this sandbox)", present)
	}
	// A refusal must come at once; calls that do their usual work (list,
	// stat, a write that replaces the entry: a container round trip on
	// docker) get the time that work takes on a loaded machine.
	refusal, work := time.Second, 5*time.Second
	for _, name := range present {
		name := "special/" + name
		err := h.timed(t, "ReadFile("+name+")", refusal, func(ctx context.Context) error {
			rc, _, err := h.p.ReadFile(ctx, id, name)
			if err == nil {
				rc.Close()
			}
			return err
		})
		wantKind(t, "ReadFile of "+name, err, providers.ErrInvalidArgument, name)
		var fi providers.FileInfo
		if err := h.timed(t, "Stat("+name+")", work, func(ctx context.Context) (err error) {
			fi, err = h.p.Stat(ctx, id, name)
			return err
		}); err != nil || fi.Type == providers.TypeFile || fi.Type == providers.TypeDir {
			t.Errorf("Stat(%q) = %+v, %v; want an entry that is neither a file nor a directory", name, fi, err)
		}
	}
	var listed []providers.FileInfo
	if err := h.timed(t, "ListFiles(special)", work, func(ctx context.Context) (err error) {
		listed, _, err = h.p.ListFiles(ctx, id, "special", 1, 100)
		return err
	}); err != nil || !slices.Equal(paths(listed), present) {
		t.Errorf("ListFiles(special) = %v, %v; want %v", paths(listed), err, present)
	}
	for _, name := range present {
		name := "special/" + name
		data := []byte("replaces " + name)
		err := h.timed(t, "WriteFile("+name+")", work, func(ctx context.Context) error {
			return h.p.WriteFile(ctx, id, name, data, 0)
		})
		if err != nil {
			wantKind(t, "WriteFile over "+name, err, providers.ErrInvalidArgument, name)
			continue
		}
		if got, _ := h.read(t, id, name); !bytes.Equal(got, data) {
			t.Errorf("WriteFile over %s was accepted, but reads back %q", name, got)
		}
	}
}

// timed runs one call and fails the test when it takes longer than bound;
// its deadline lies well past the bound, so that a hang fails the test
// instead of stalling it.
func (h *harness) timed(t *testing.T, what string, bound time.Duration, call func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), bound+10*time.Second)
	defer cancel()
	start := time.Now()
	err := call(ctx)
	if d := time.Since(start); d > bound {
		t.Errorf("%s took %v; want an answer within %v", what, d, bound)
	}
	return err
}

func (h *harness) read(t *testing.T, id, name string) ([]byte, providers.FileInfo) {
	t.Helper()
	rc, fi, err := h.p.ReadFile(testCtx(t), id, name)
	if err != nil {
		t.Fatalf("ReadFile(%q): %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("ReadFile(%q): reading: %v", name, err)
	}
	return b, fi
}

func (h *harness) stat(t *testing.T, id, name string) providers.FileInfo {
	t.Helper()
	fi, err := h.p.Stat(testCtx(t), id, name)
	if err != nil {
		t.Fatalf("Stat(%q): %v", name, err)
	}
	return fi
}

func paths(ents []providers.FileInfo) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Path)
	}
	return out
}
