package tools

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	file := "l1\nl2\nl3\nl4\nfoo l5 foo\nl6\nl7\nl8\nl9\nl10\nl11\nl12\nl13\nl14\nfoo\nl16\n"
	cases := []struct {
		name, old, new string
		want           string
	}{
		{"one line", "l2\n", "two\n", "--- a/f.txt\n+++ b/f.txt\n@@ -1,5 +1,5 @@\n l1\n-l2\n+two\n l3\n l4\n foo l5 foo\n"},
		{"delete a line", "l1\n", "", "--- a/f.txt\n+++ b/f.txt\n@@ -1,4 +1,3 @@\n-l1\n l2\n l3\n l4\n"},
		{"add lines, two hunks, two matches on one line", "foo", "bar\nbaz",
			"--- a/f.txt\n+++ b/f.txt\n" +
				"@@ -2,7 +2,9 @@\n l2\n l3\n l4\n-foo l5 foo\n+bar\n+baz l5 bar\n+baz\n l6\n l7\n l8\n" +
				"@@ -12,5 +14,6 @@\n l12\n l13\n l14\n-foo\n+bar\n+baz\n l16\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := unifiedDiff("f.txt", file, matchOffsets(file, tc.old), len(tc.old), tc.new)
			if got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			checkPatchApplies(t, file, strings.ReplaceAll(file, tc.old, tc.new), got)
		})
	}
}

func TestUnifiedDiffNoTrailingNewline(t *testing.T) {
	file := "a\nb"
	got := unifiedDiff("f.txt", file, matchOffsets(file, "b"), 1, "c")
	want := "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"
	if got != want {
		t.Fatalf("got:\n%q\nwant:\n%q", got, want)
	}
	checkPatchApplies(t, file, "a\nc", got)
}

// checkPatchApplies proves the diff is a real patch: patch(1) turns old into new.
func checkPatchApplies(t *testing.T, old, new, diff string) {
	t.Helper()
	if _, err := exec.LookPath("patch"); err != nil {
		t.Log("patch(1) not installed; skipping the apply check")
		return
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "f.txt")
	os.WriteFile(f, []byte(old), 0o644)
	cmd := exec.Command("patch", "-p1", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(diff)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("patch failed: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(f)
	if string(got) != new {
		t.Fatalf("patched file:\n%q\nwant:\n%q", got, new)
	}
}
