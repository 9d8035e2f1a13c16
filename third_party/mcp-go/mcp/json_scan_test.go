package mcp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
)

var jsonStrings = []string{
	"", "plain text", "<a href=\"x\">&amp;</a>", "\x00\x01\x1f\b\f\n\r\t\x7f", `"\/`,
	"é漢字🙂", "\u2028\u2029", "\xff\xfe", "ab\xe6\xbc", "\xed\xa0\x80", strings.Repeat("line\n", 100),
}

// AppendJSONString writes what encoding/json writes, byte for byte.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonStrings {
		want, _ := json.Marshal(s)
		if got := AppendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("%q: got %s, want %s", s, got[1:], want)
		}
		if got := AppendJSONString(nil, []byte(s)); string(got) != string(want) {
			t.Errorf("%q as bytes: got %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

var jsonTexts = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a" : [1, -2.5e+3, 0, -0, 1E2, true, false, null, "x", {}, []] }`,
	`{"s":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"}`, `{"a":{"b":{"c":[[[]]]}}}`, `[1,2]`, `"str"`, `12`, `null`,
	``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{a:1}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`,
	`{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a":nulll}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"` + "\n" + `"}`,
	`{"a":"unterminated}`, `{"a":[1,]}`, `{"a":[1 2]}`, `{} {}`, `{}x`, "{\"a\":\"\xff\"}", `{"a":1}` + "\n",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	`{"a":` + strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat("}", 10001),
}

// ValidJSON and EachJSONMember accept exactly what encoding/json accepts.
func TestJSONScanAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonTexts {
		checkJSONScan(t, []byte(s))
	}
}

func FuzzJSONScan(f *testing.F) {
	for _, s := range jsonTexts {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkJSONScan(t, data) })
}

func checkJSONScan(t *testing.T, data []byte) {
	t.Helper()
	valid, compact := ValidJSON(data)
	if want := json.Valid(data); valid != want {
		t.Fatalf("ValidJSON(%.80q) = %v, encoding/json says %v", data, valid, want)
	}
	if valid {
		var buf bytes.Buffer
		json.Compact(&buf, data)
		if want := buf.String() == string(data); compact != want {
			t.Fatalf("ValidJSON(%.80q): compact = %v, want %v", data, compact, want)
		}
	}
	var members map[string]json.RawMessage
	isObject := json.Unmarshal(data, &members) == nil && members != nil
	seen := map[string]json.RawMessage{} // the last value of a key, as in a map
	err := EachJSONMember(data, func(key, value []byte) error {
		k, err := JSONKey(key)
		if err != nil {
			t.Fatalf("key %s: %v", key, err)
		}
		seen[k] = value
		return nil
	})
	if (err == nil) != isObject {
		t.Fatalf("EachJSONMember(%.80q) = %v; an object: %v", data, err, isObject)
	}
	for k, v := range members {
		if err == nil && !bytes.Equal(compactJSON(seen[k]), compactJSON(v)) {
			t.Fatalf("%.80q: member %q is %s, encoding/json says %s", data, k, seen[k], v)
		}
	}
}

func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	json.Compact(&buf, b)
	return buf.Bytes()
}

// JSONFields decodes what json.Unmarshal into a struct decodes, and leaves
// to it whatever it might read otherwise.
func TestJSONFields(t *testing.T) {
	type target struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	tests := []struct {
		in       string
		fastPath bool
	}{
		{`{"name":"a","n":2,"other":[1,{"x":null}]}`, true},
		{`{"n":null}`, true},
		{`{"Name":"a"}`, false},      // case folded
		{`{"NAME":"a"}`, false},      // case folded
		{`{"na\u006de":"a"}`, false}, // escaped
		{`{"name":"a","name":"b"}`, false},
		{`{"n":"x"}`, false}, // a type error, worded by encoding/json
		{`["name"]`, false},
		{`null`, false},
		{`{"name":"a"`, false},
	}
	for _, tt := range tests {
		var got target
		err := JSONFields([]byte(tt.in), map[string]any{"name": &got.Name, "n": &got.N})
		if (err == nil) != tt.fastPath {
			t.Errorf("%s: err %v, want the fast path: %v", tt.in, err, tt.fastPath)
			continue
		}
		var want target
		if err == nil && (json.Unmarshal([]byte(tt.in), &want) != nil || got != want) {
			t.Errorf("%s: got %+v, encoding/json %+v", tt.in, got, want)
		}
	}
}

// plainWord agrees with plainStringByte for every byte at every place in a
// word, among plain bytes or after another byte that is not plain.
func TestPlainWord(t *testing.T) {
	for _, fill := range []byte{'a', 0xff, 0x20, '"'} {
		for c := 0; c < 256; c++ {
			for at := 0; at < 8; at++ {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[at] = byte(c)
				want := plainStringByte[c] && plainStringByte[fill]
				if got := plainWord(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("%q: got %v, want %v", w, got, want)
				}
			}
		}
	}
}

// htmlSafeWord agrees with htmlSafeByte in the same way.
func TestHTMLSafeWord(t *testing.T) {
	for _, fill := range []byte{'a', 0xff, 0x20, '&'} {
		for c := 0; c < 256; c++ {
			for at := 0; at < 8; at++ {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[at] = byte(c)
				want := c < 0x80 && htmlSafeByte[c] && fill < 0x80 && htmlSafeByte[fill]
				if got := htmlSafeWord(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("%q: got %v, want %v", w, got, want)
				}
			}
		}
	}
}

func BenchmarkAppendJSONString(b *testing.B) {
	s := strings.Repeat(strings.Repeat("a", 98)+"\n", 1<<20/99)
	b.SetBytes(int64(len(s)))
	buf := make([]byte, 0, 2<<20)
	for b.Loop() {
		buf = AppendJSONString(buf[:0], s)
	}
}
