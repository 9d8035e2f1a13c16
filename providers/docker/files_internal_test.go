package docker

import (
	"fmt"
	"testing"
)

// The walk's names and stat lines are paired exactly, whatever the names
// hold, and a name whose stat failed (it went in between) is left out.
func TestParseFindOutput(t *testing.T) {
	for _, tc := range []struct {
		name         string
		names, stats string
		want         string
	}{
		{"plain", "./a\x00./b\x00", "81a4 1 10 ./a\n41ed 4096 20 ./b\n", "[a:file:1 b:dir:4096]"},
		{"newline and spaces", "./new\nline\x00./with space\x00", "81a4 3 1 ./new\nline\n81a4 2 1 ./with space\n", "[new\nline:file:3 with space:file:2]"},
		{"a name that looks like a line", "./x\n81a4 9 9 y\x00./z\x00", "81a4 1 1 ./x\n81a4 9 9 y\n81a4 2 2 ./z\n", "[x\n81a4 9 9 y:file:1 z:file:2]"},
		{"vanished before its stat", "./gone\x00./kept\x00", "81a4 5 1 ./kept\n", "[kept:file:5]"},
		{"cut off output", "./a\x00./b\x00", "81a4 1 10 ./a\n41ed 40", "[a:file:1]"},
		{"nothing", "", "", "[]"},
	} {
		var got []string
		for _, e := range parseFindOutput([]byte(tc.names), []byte(tc.stats)) {
			got = append(got, fmt.Sprintf("%s:%s:%d", e.Path, e.Type, e.Size))
		}
		if s := fmt.Sprint(got); s != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, s, tc.want)
		}
	}
}
