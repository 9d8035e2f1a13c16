package main

import (
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"installed as a module", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: vcs("0123456789abcdef0123", "false")}, true, "v1.4.0"},
		{"built in a clean checkout", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123456789abcdef0123", "false")}, true, "0123456789ab"},
		{"built with local changes", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123456789abcdef0123", "true")}, true, "0123456789ab+dirty"},
		{"built without VCS", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel"},
		{"no build information", nil, false, "devel"},
	}
	for _, tc := range tests {
		if got := buildVersion(tc.info, tc.ok); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// --version prints the version the build carries, the one serverInfo
// reports, and nothing else.
func TestVersionFlag(t *testing.T) {
	out, err := exec.Command(binary, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v: %s", err, out)
	}
	want := "mcp-sandbox " + buildVersion(readBuildInfoOf(t, binary)) + "\n"
	if string(out) != want {
		t.Errorf("--version printed %q, want %q", out, want)
	}
	if strings.Contains(string(out), "devel") {
		t.Logf("the test binary was built without VCS information: %q", out)
	}
}

// readBuildInfoOf reads the build information of another binary, as
// go version -m does.
func readBuildInfoOf(t *testing.T, path string) (*debug.BuildInfo, bool) {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", path).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	// Skip the first line (the path and Go version); the rest parses as
	// debug.BuildInfo's text form after its "\t" indentation is removed.
	_, rest, _ := strings.Cut(string(out), "\n")
	var lines []string
	for _, l := range strings.Split(rest, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	info, err := debug.ParseBuildInfo("go\tgo\n" + strings.Join(lines, "\n"))
	if err != nil {
		t.Fatalf("parse go version -m: %v\n%s", err, out)
	}
	return info, true
}
