package tools

import (
	"encoding/json"
	"testing"
)

// unquoteJSON decodes every string literal exactly as encoding/json does.
func TestUnquoteJSONMatchesEncodingJSON(t *testing.T) {
	tests := []string{
		`""`, `"plain"`, `"line\nnext\r\ttab\\ \" \/ \b\f"`, `"caf\u00e9 \u4e16"`, `"\ud83d\ude00 pair"`,
		`"\ud83d lone high"`, `"\ude00 lone low"`, `"\ud83d\u0041 high then BMP"`, `"\ud83d\ud83d\ude00"`,
		"\"raw \xff bad utf-8 \xe2\x82\"", "\"\xed\xa0\x80 encoded surrogate\"", `"\u0000 nul"`, `"€ ünïcödé"`,
	}
	for _, lit := range tests {
		var want string
		if err := json.Unmarshal([]byte(lit), &want); err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
		got, ok := unquoteJSON([]byte(lit))
		if !ok || string(got) != want {
			t.Errorf("%s: got %q (ok %v), want %q", lit, got, ok, want)
		}
	}
	for _, bad := range []string{`"`, `"\"`, `"\x"`, `"\u12"`, `"\u12g4"`, `12`, `{"a":1}`, "\"tab\there\""} {
		if _, ok := unquoteJSON([]byte(bad)); ok {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func FuzzUnquoteJSON(f *testing.F) {
	f.Add("a\n\"\\\u00e9\U0001F600\xff")
	f.Fuzz(func(t *testing.T, s string) {
		lit, _ := json.Marshal(s)
		var want string
		json.Unmarshal(lit, &want)
		if got, ok := unquoteJSON(lit); !ok || string(got) != want {
			t.Errorf("%q: got %q, want %q", lit, got, want)
		}
		// The same bytes as a literal as they stand: raw bytes, escapes
		// and mistakes alike are read as encoding/json reads them.
		raw := []byte(`"` + s + `"`)
		err := json.Unmarshal(raw, &want)
		got, ok := unquoteJSON(raw)
		if (err == nil) != ok || (ok && string(got) != want) {
			t.Errorf("%q: got %q (ok %v), encoding/json %q (%v)", raw, got, ok, want, err)
		}
	})
}
