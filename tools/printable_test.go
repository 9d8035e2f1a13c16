package tools

import "testing"

func TestPrintable(t *testing.T) {
	tests := []struct{ in, name, message string }{
		{"plain/file.txt", "plain/file.txt", "plain/file.txt"},
		{"héllo wörld.txt", "héllo wörld.txt", "héllo wörld.txt"},
		{"a\nb", `"a\nb"`, `a\nb`},
		{"a\r\nFORGED", `"a\r\nFORGED"`, `a\r\nFORGED`},
		{"\x1b[31mred", `"\x1b[31mred"`, `\x1b[31mred`},
		{"tab\there", `"tab\there"`, `tab\there`},
		{"bidi\u202etxt.exe", `"bidi\u202etxt.exe"`, `bidi\u202etxt.exe`},
		{"bad\xffutf8", `"bad\xffutf8"`, `bad\xffutf8`},
		{"\x7f", `"\x7f"`, `\x7f`},
		{`"quoted\n"`, `"\"quoted\\n\""`, `"quoted\n"`}, // a literal backslash-n: quoted so it cannot pass for a newline
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.name {
			t.Errorf("printable(%q) = %s, want %s", tt.in, got, tt.name)
		}
		if got := escapeControls(tt.in); got != tt.message {
			t.Errorf("escapeControls(%q) = %s, want %s", tt.in, got, tt.message)
		}
	}
}
