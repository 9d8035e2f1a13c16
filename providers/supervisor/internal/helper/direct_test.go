package helper

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Only commands a shell would read as a program and its plain arguments
// start without one.
func TestPlainWords(t *testing.T) {
	for _, tc := range []struct {
		command string
		words   []string
	}{
		{"true", []string{"true"}},
		{"  npm\ttest  ", []string{"npm", "test"}},
		{"go test -run=X ./... -count=1", []string{"go", "test", "-run=X", "./...", "-count=1"}},
		{"python3 a.py key=value user@host:8080 +1,2%", []string{"python3", "a.py", "key=value", "user@host:8080", "+1,2%"}},
		// What a shell reads otherwise.
		{"", nil}, {"   ", nil},
		{"echo $HOME", nil}, {"echo 'a b'", nil}, {`echo "a"`, nil}, {`echo a\ b`, nil},
		{"ls *.go", nil}, {"ls a?", nil}, {"ls [ab]", nil}, {"echo ~", nil}, {"echo a # b", nil},
		{"a; b", nil}, {"a && b", nil}, {"a | b", nil}, {"a > f", nil}, {"a < f", nil}, {"a &", nil},
		{"(a)", nil}, {"{ a; }", nil}, {"a\nb", nil}, {"echo `id`", nil}, {"! a", nil},
		{"A=1 env", nil},
		// Builtins and keywords.
		{"cd /tmp", nil}, {"exit 3", nil}, {"export A", nil}, {"pwd", nil}, {"ulimit -n", nil},
		{"wait", nil}, {"exec ls", nil}, {"set -e", nil}, {". ./env.sh", nil}, {"time ls", nil},
	} {
		words, ok := plainWords(tc.command)
		if ok != (tc.words != nil) || !slices.Equal(words, tc.words) {
			t.Errorf("plainWords(%q) = %q, %v; want %q", tc.command, words, ok, tc.words)
		}
	}
}

// The program is found as sh finds it: the PATH of the command's own
// environment, relative entries and names against its directory, and only
// executable regular files.
func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin, work := filepath.Join(dir, "bin"), filepath.Join(dir, "work")
	for _, d := range []string{bin, work, filepath.Join(work, "tools"), filepath.Join(bin, "adir")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(bin, "prog"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "data"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(work, "tools", "local"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(work, "run"), []byte("#!/bin/sh\n"), 0o755)
	env := []string{"HOME=/x", "PATH=" + bin + ":tools"}
	for _, tc := range []struct {
		name, dir, want string
		ok              bool
	}{
		{"prog", "", filepath.Join(bin, "prog"), true},
		{"local", work, "tools/local", true},
		{"./run", work, "./run", true},
		{"run", work, "", false},     // not on PATH
		{"data", "", "", false},      // not executable
		{"adir", "", "", false},      // a directory
		{"./run", dir, "", false},    // relative to the command's directory
		{"missing", work, "", false}, // sh gives the message
		{filepath.Join(bin, "prog"), work, filepath.Join(bin, "prog"), true},
	} {
		got, ok := lookPath(tc.name, tc.dir, env)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("lookPath(%q in %q) = %q, %v; want %q, %v", tc.name, tc.dir, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := lookPath("prog", "", []string{"HOME=/x"}); ok {
		t.Error("without PATH in the environment the shell's default PATH decides, not this one")
	}
}
