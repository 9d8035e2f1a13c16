package tools

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text renderings print names and values that sandboxed code chooses (file
// names, commands, process names). A newline, carriage return, ANSI escape
// or bidi override in one could forge lines or hide text in what a client
// shows, so they go through these helpers; structured content stays exact.

// printable returns s as is when every rune is printable, otherwise as a Go
// quoted string ("a\nb"), so that a name can never start a new line or
// recolour a terminal. A name that itself begins with a double quote is
// quoted too, so the two forms cannot be confused.
func printable(s string) string {
	if needsEscape(s) || strings.HasPrefix(s, `"`) {
		return strconv.Quote(s)
	}
	return s
}

// escapeControls escapes the runes printable would quote for, in place, for
// messages (errors) that mix fixed text with names: "a\nb" keeps one line.
func escapeControls(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, n := utf8.DecodeRuneInString(s[i:])
		w = n
		if r == utf8.RuneError && n == 1 || !strconv.IsPrint(r) {
			q := strconv.Quote(s[i : i+n])
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteString(s[i : i+n])
	}
	return b.String()
}

func needsEscape(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return true
		}
	}
	return false
}
