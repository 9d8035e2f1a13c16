package providers

import (
	"os/exec"
	"testing"
)

func TestShellQuoteIsOneWord(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", "a b\tc\nd", `$(rm -rf /) "x" \ ; &`, "'''"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+ShellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("ShellQuote(%q) printed %q, %v", s, out, err)
		}
	}
}

func TestLabelsMatch(t *testing.T) {
	have := map[string]string{"a": "1", "b": ""}
	for _, tc := range []struct {
		want map[string]string
		ok   bool
	}{
		{nil, true}, {map[string]string{"a": "1"}, true}, {map[string]string{"b": ""}, true},
		{map[string]string{"c": ""}, false}, {map[string]string{"a": "2"}, false},
	} {
		if LabelsMatch(have, tc.want) != tc.ok {
			t.Errorf("LabelsMatch(%v, %v) = %v", have, tc.want, !tc.ok)
		}
	}
}
