package mcp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// A tools/call message can be a whole file, and every json.Unmarshal scans
// all of its input twice (a validation pass, then the decoding), a byte at
// a time through a state machine. The functions here read a message's
// structure in one pass of a tight loop, so that encoding/json only ever
// sees the small members. They never decide an error on their own: a
// caller that gets one falls back to encoding/json, which words it.

// errJSONSlowPath says that the fast path cannot tell what encoding/json
// would make of the input; the caller decodes it with encoding/json.
var errJSONSlowPath = errors.New("mcp: not decoded by the fast path")

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

// EachJSONMember validates data as one JSON object (whitespace around it
// allowed) and calls fn for each of its members in order, with the key as
// written (quotes included, escapes not decoded: see [JSONKey]) and the
// value's bytes (a slice of data). It stops at the first error fn returns.
// Any other error, for input that is not an object or not valid JSON, is
// to be worded by encoding/json.
func EachJSONMember(data []byte, fn func(key, value []byte) error) error {
	i := skipJSONSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errJSONSlowPath
	}
	end, err := eachMember(data, i, 1, fn)
	if err != nil {
		return err
	}
	if skipJSONSpace(data, end) != len(data) {
		return errJSONSlowPath
	}
	return nil
}

// ValidJSON reports whether data is one valid JSON value, and whether it is
// compact: no whitespace outside strings.
func ValidJSON(data []byte) (valid, compact bool) {
	i := skipJSONSpace(data, 0)
	end, ok := skipJSONValue(data, i, 0)
	if !ok || skipJSONSpace(data, end) != len(data) {
		return false, false
	}
	return true, i == 0 && end == len(data) && !hasSpaceOutsideStrings(data)
}

// JSONKey decodes a member's key as encoding/json would: quoted holds its
// quotes. A key without escapes or non-ASCII bytes is its bytes.
func JSONKey(quoted []byte) (string, error) {
	plain := true
	for _, c := range quoted[1 : len(quoted)-1] {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	var s string
	err := json.Unmarshal(quoted, &s)
	return s, err
}

// JSONFields decodes the members of the object data that are named in
// fields and ignores the others, as json.Unmarshal into a struct with those
// fields would. A field's destination is a pointer, decoded into by
// json.Unmarshal on the value alone, or a func(value []byte) error, which
// gets the value's bytes (valid JSON, a slice of data: copy what it keeps).
// It returns an error when encoding/json could read the object otherwise:
// a key that matches a field only with its case folded, or written with
// escapes or non-ASCII bytes, or a field given twice (encoding/json merges
// such values); the caller then decodes data with encoding/json.
func JSONFields(data []byte, fields map[string]any) error {
	seen := make(map[string]bool, len(fields))
	return EachJSONMember(data, func(key, value []byte) error {
		name := key[1 : len(key)-1]
		dst, ok := fields[string(name)]
		if !ok {
			if !plainASCII(name) {
				return errJSONSlowPath
			}
			for f := range fields {
				if bytes.EqualFold(name, []byte(f)) {
					return errJSONSlowPath
				}
			}
			return nil
		}
		if seen[string(name)] {
			return errJSONSlowPath
		}
		seen[string(name)] = true
		var err error
		if decode, ok := dst.(func([]byte) error); ok {
			err = decode(value)
		} else {
			err = json.Unmarshal(value, dst)
		}
		if err != nil {
			return errJSONSlowPath
		}
		return nil
	})
}

func plainASCII(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipJSONSpace(data []byte, i int) int {
	for i < len(data) && isJSONSpace(data[i]) {
		i++
	}
	return i
}

// eachMember walks the object at data[i] (a '{'), calling fn if not nil,
// and returns the index after it.
func eachMember(data []byte, i, depth int, fn func(key, value []byte) error) (int, error) {
	i = skipJSONSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, errJSONSlowPath
		}
		keyEnd, ok := skipJSONString(data, i)
		if !ok {
			return 0, errJSONSlowPath
		}
		key := data[i:keyEnd]
		i = skipJSONSpace(data, keyEnd)
		if i >= len(data) || data[i] != ':' {
			return 0, errJSONSlowPath
		}
		start := skipJSONSpace(data, i+1)
		end, ok := skipJSONValue(data, start, depth)
		if !ok {
			return 0, errJSONSlowPath
		}
		if fn != nil {
			if err := fn(key, data[start:end]); err != nil {
				return 0, err
			}
		}
		i = skipJSONSpace(data, end)
		if i >= len(data) {
			return 0, errJSONSlowPath
		}
		switch data[i] {
		case ',':
			i = skipJSONSpace(data, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, errJSONSlowPath
		}
	}
}

// skipJSONValue validates the value at data[i] and returns the index after
// it; depth is how many containers enclose it.
func skipJSONValue(data []byte, i, depth int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch c := data[i]; {
	case c == '"':
		return skipJSONString(data, i)
	case c == '{':
		if depth >= maxJSONDepth {
			return 0, false
		}
		end, err := eachMember(data, i, depth+1, nil)
		return end, err == nil
	case c == '[':
		if depth >= maxJSONDepth {
			return 0, false
		}
		i = skipJSONSpace(data, i+1)
		if i < len(data) && data[i] == ']' {
			return i + 1, true
		}
		for {
			end, ok := skipJSONValue(data, i, depth+1)
			if !ok {
				return 0, false
			}
			i = skipJSONSpace(data, end)
			if i >= len(data) {
				return 0, false
			}
			switch data[i] {
			case ',':
				i = skipJSONSpace(data, i+1)
			case ']':
				return i + 1, true
			default:
				return 0, false
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return skipJSONNumber(data, i)
	case c == 't':
		return skipJSONLiteral(data, i, "true")
	case c == 'f':
		return skipJSONLiteral(data, i, "false")
	case c == 'n':
		return skipJSONLiteral(data, i, "null")
	}
	return 0, false
}

func skipJSONLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// skipJSONNumber follows JSON's grammar for numbers:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func skipJSONNumber(data []byte, i int) (int, bool) {
	digits := func(i int) (int, bool) {
		start := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		return i, i > start
	}
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	default:
		var ok bool
		if i, ok = digits(i); !ok {
			return 0, false
		}
	}
	if i < len(data) && data[i] == '.' {
		var ok bool
		if i, ok = digits(i + 1); !ok {
			return 0, false
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		var ok bool
		if i, ok = digits(i); !ok {
			return 0, false
		}
	}
	return i, true
}

// plainStringByte holds the bytes a JSON string may hold as they are: all
// but the quote, the backslash and control characters.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainWord reports whether none of the eight bytes in x is a quote, a
// backslash or a control character. Each test is the classic "has a zero
// byte" one, (v - 0x01..) & ^v & 0x80..: exact on whether any byte is.
func plainWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	control := (x - ones*0x20) & ^x & highs
	return control|((quote-ones) & ^quote & highs)|((backslash-ones) & ^backslash & highs) == 0
}

// skipJSONString validates the string at data[i] (a '"') and returns the
// index after its closing quote. Like encoding/json, it accepts any bytes
// but control characters: invalid UTF-8 is replaced when decoded.
func skipJSONString(data []byte, i int) (int, bool) {
	i++
	for {
		// The hot loop: most of a large string is plain bytes, tested eight
		// at a time.
		for i+8 <= len(data) && plainWord(binary.LittleEndian.Uint64(data[i:])) {
			i += 8
		}
		for i < len(data) && plainStringByte[data[i]] {
			i++
		}
		if i >= len(data) {
			return 0, false
		}
		switch data[i] {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 >= len(data) {
				return 0, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(data)-i < 6 {
					return 0, false
				}
				for _, h := range data[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return 0, false
					}
				}
				i += 6
			default:
				return 0, false
			}
		default: // a control character
			return 0, false
		}
	}
}

// hasSpaceOutsideStrings reports whether valid JSON data holds whitespace
// between its tokens.
func hasSpaceOutsideStrings(data []byte) bool {
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			end, _ := skipJSONString(data, i)
			i = end - 1
		case isJSONSpace(c):
			return true
		}
	}
	return false
}

// AppendJSONString appends s as a JSON string, exactly as encoding/json
// writes it (HTML characters, U+2028 and U+2029 escaped, invalid UTF-8 as
// U+FFFD), to dst: one pass over s, into a buffer the caller can size.
func AppendJSONString[S ~string | ~[]byte](dst []byte, s S) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// The hot loop: most of a large text needs no escape, tested eight
		// bytes at a time.
		for i+8 <= len(s) && htmlSafeWord(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
			uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if htmlSafeByte[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		// A copy of a rune's bytes stays on the stack, whatever S is.
		c, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// htmlSafeWord reports whether encoding/json writes each of the eight bytes
// in x as it is: ASCII, not a control character, not '"', '\\', '<', '>'
// or '&'. A pair of characters one bit apart ('"' and '&', '<' and '>') is
// tested at once with that bit masked out.
func htmlSafeWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	control := (x - ones*0x20) & ^x & highs
	quoteAmp := hasZero((x ^ (ones * '"')) & (ones * 0xfb)) // '"'^'&' is 0x04
	angles := hasZero((x ^ (ones * '<')) & (ones * 0xfd))   // '<'^'>' is 0x02
	backslash := hasZero(x ^ (ones * '\\'))
	return x&highs|control|quoteAmp|angles|backslash == 0
}

// htmlSafeByte holds the ASCII bytes encoding/json writes as they are.
var htmlSafeByte = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
