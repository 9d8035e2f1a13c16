package tools

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// bindMembers (one pass, each value decoded alone) decodes what bindWhole
// (encoding/json over the whole object) decodes, and fails with the same
// message, for every tool's arguments and every shape of mistake.
func TestBindMembersAgreesWithBindWhole(t *testing.T) {
	inputs := []string{
		`{}`, `{"path":"f.txt","content":"a\nb","encoding":"utf-8"}`, `{"content":null,"path":null}`,
		`{"path":"p","path":"q"}`, `{"pa\u0074h":"p"}`, `{"Path":"p"}`, `{"path":"p","bogus":1}`, `{"bogus":1,"path":2}`,
		`{"path":5}`, `{"path":"f","content":5}`, `{"path":"f","content":"\ud800 \u00e9 \"q\" \\ <>&"}`,
		`{"content":"` + strings.Repeat("x\\n", 1000) + `"}`, "{\"path\":\"\xff\"}", `{"offset":1}`, `{"path":"p","offset":3}`,
		`{"limit":1.5}`, `{"limit":"2"}`, `{"limit":-1}`, `{"limit":1e3}`, `{"limit":9223372036854775808}`, `{"start_line":2,"limit":3}`,
		`{"limit":"x","content":7}`, `{"content":7,"limit":"x"}`, `{"limit":"x","env":{"A":null}}`, `{"limit":true,"bogus":1}`,
		`{"command":"true","env":{"A":"1"},"env":{"B":"2"}}`, `{"command":"true","env":{"A":null}}`, `{"env":["A"]}`, `{"env":null}`,
		`{"command":"x","timeout_seconds":"5"}`, `{"command":"x","wait_seconds":1e400}`, `{"command":["a"]}`, `{"command":{"a":1}}`,
		`{"process_id":"p:1","byte_offset":9007199254740993,"limit":0}`, `{"byte_offset":-0.0}`, `{"stream":null,"wait_seconds":null}`,
		`[]`, `"path"`, `{"path":"p"`, `{"path" "p"}`,
	}
	types := []any{&readFileArgs{}, &writeFileArgs{}, &editFileArgs{}, &runCommandArgs{}, &processOutputArgs{}}
	for _, typ := range types {
		for _, in := range inputs {
			fast := reflect.New(reflect.TypeOf(typ).Elem()).Interface()
			whole := reflect.New(reflect.TypeOf(typ).Elem()).Interface()
			fastErr, wholeErr := bindMembers([]byte(in), fast), bindWhole([]byte(in), whole)
			if errors.Is(fastErr, errUnread) {
				if json.Valid([]byte(in)) && in[0] == '{' {
					t.Errorf("%T %s: a JSON object was left to encoding/json", typ, in)
				}
				continue
			}
			if msg(fastErr) != msg(wholeErr) {
				t.Errorf("%T %s:\n one pass: %v\n encoding/json: %v", typ, in, fastErr, wholeErr)
			}
			if fastErr == nil && !reflect.DeepEqual(fast, whole) {
				t.Errorf("%T %s: one pass %+v, encoding/json %+v", typ, in, fast, whole)
			}
		}
	}
}

func msg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
