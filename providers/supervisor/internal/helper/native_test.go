package helper

import (
	"slices"
	"strings"
	"testing"
)

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// parseRun reads run.sh as the supervisor writes it, and nothing else.
func TestParseRun(t *testing.T) {
	cmd := `echo "it's" $HOME; printf '%s\n' a\ b | cat`
	for _, tc := range []struct {
		name, script string
		ok           bool
		dir          string
		env          []string
	}{
		{"plain", "exec /bin/sh -c " + quote(cmd) + " mcp-sandbox-proc\n", true, "", nil},
		{"cwd and env", "cd " + quote("sub dir/it's") + " || exit 126\nexec env -- " + quote("A=1 2") + " " + quote("B='x'") + " /bin/sh -c " + quote(cmd) + " mcp-sandbox-proc\n", true, "sub dir/it's", []string{"A=1 2", "B='x'"}},
		{"empty value", "exec env -- " + quote("E=") + " /bin/sh -c " + quote(cmd) + " mcp-sandbox-proc\n", true, "", []string{"E="}},
		{"unquoted expansion", "exec /bin/sh -c $CMD mcp-sandbox-proc\n", false, "", nil},
		{"something else first", "rm -rf /\nexec /bin/sh -c " + quote(cmd) + " mcp-sandbox-proc\n", false, "", nil},
		{"open quote", "exec /bin/sh -c 'echo mcp-sandbox-proc\n", false, "", nil},
		{"another program", "exec /bin/bash -c " + quote(cmd) + " mcp-sandbox-proc\n", false, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, env, argv, ok := parseRun(tc.script)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if dir != tc.dir || !slices.Equal(env, tc.env) || !slices.Equal(argv, []string{"/bin/sh", "-c", cmd, "mcp-sandbox-proc"}) {
				t.Fatalf("dir %q env %q argv %q", dir, env, argv)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "PATH=/bin"}, []string{"B=3", "C=4"})
	if !slices.Equal(got, []string{"A=1", "PATH=/bin", "B=3", "C=4"}) {
		t.Fatal(got)
	}
}
