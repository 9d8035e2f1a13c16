package tools

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// unquoteJSON decodes a JSON string literal into one new slice, as
// encoding/json would decode it into a string (invalid UTF-8 and lone
// surrogates become U+FFFD) but without the string and its copy. ok is
// false when b is not a string literal.
func unquoteJSON(b []byte) (out []byte, ok bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return nil, false
	}
	b = b[1 : len(b)-1]
	out = make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '\\':
			if i+1 >= len(b) {
				return nil, false
			}
			i++
			switch e := b[i]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, n := hex4(b[i+1:])
				if n == 0 {
					return nil, false
				}
				i += n
				if utf16.IsSurrogate(r) {
					if len(b) > i+2 && b[i+1] == '\\' && b[i+2] == 'u' {
						if r2, n2 := hex4(b[i+3:]); n2 > 0 {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								i += 2 + n2
								out = utf8.AppendRune(out, dec)
								break
							}
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, false
			}
			i++
		case c < 0x20 || c == '"':
			return nil, false
		case c < utf8.RuneSelf:
			// A run of plain ASCII, most of a file, is copied at once.
			start := i
			for i++; i < len(b) && b[i] < utf8.RuneSelf && b[i] >= 0x20 && b[i] != '\\' && b[i] != '"'; i++ {
			}
			out = append(out, b[start:i]...)
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, b[i:i+n]...)
			}
			i += n
		}
	}
	return out, true
}

// hex4 reads the four hex digits of a \u escape; n is 4, or 0 when they
// are not there.
func hex4(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, 0
	}
	v, err := strconv.ParseUint(string(b[:4]), 16, 32)
	if err != nil {
		return 0, 0
	}
	return rune(v), 4
}
