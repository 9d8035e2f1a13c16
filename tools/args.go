package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
)

// bind decodes the call's arguments strictly, from the bytes the client
// sent: a misspelt or unknown argument is an error the model can correct,
// and a number is checked against its range before it becomes a Go value
// (a float64 detour would round integers above 2^53). Decoding straight
// from the wire bytes also keeps a large write_file to one decoded copy.
func bind(req mcp.CallToolRequest, v any) error {
	raw, err := rawArguments(req)
	if err != nil {
		return err
	}
	err = bindMembers(raw, v)
	if errors.Is(err, errUnread) {
		reflect.ValueOf(v).Elem().SetZero()
		err = bindWhole(raw, v)
	}
	if err != nil {
		return err
	}
	return checkRanges(v)
}

// errUnread: the arguments are not a JSON object that bindMembers could
// walk; bindWhole words why.
var errUnread = errors.New("arguments not read")

// bindMembers is bindWhole in one pass over the arguments, each value
// decoded alone into its field: encoding/json would scan a large argument
// (a file's content) four times, to check the names, to validate it and
// to decode it. The errors are bindWhole's: an unknown name first, then
// an argument's own decoder, then the first value of the wrong type.
func bindMembers(raw []byte, v any) error {
	rv := reflect.ValueOf(v).Elem()
	fields := jsonFields(rv.Type())
	var unknown, argErr, typeErr error
	err := mcp.EachJSONMember(raw, func(quoted, value []byte) error {
		key, err := mcp.JSONKey(quoted)
		if err != nil {
			return errUnread
		}
		i, ok := fields[key]
		if !ok {
			if unknown == nil {
				unknown = unknownArgument(key, fieldNames(v))
			}
			return nil
		}
		if unknown != nil || argErr != nil {
			return nil // decoding cannot change the answer
		}
		if err := decodeField(rv.Field(i), value); err != nil {
			if _, ok := err.(argumentError); ok {
				argErr = err
			} else if typeErr == nil {
				typeErr = decodeError(v, key, err)
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return errUnread
	case unknown != nil:
		return unknown
	case argErr != nil:
		return argErr
	}
	return typeErr
}

// decodeField decodes one argument's value as encoding/json would decode it
// into the field: through the field's own decoder if it has one, a string
// by the one-pass unquote.
func decodeField(f reflect.Value, value []byte) error {
	if u, ok := f.Addr().Interface().(json.Unmarshaler); ok {
		return u.UnmarshalJSON(value)
	}
	if f.Kind() == reflect.String && value[0] == '"' {
		if s, ok := unquoteJSON(value); ok {
			f.SetString(string(s))
			return nil
		}
	}
	return json.Unmarshal(value, f.Addr().Interface())
}

// jsonFields maps each argument name of the struct type t to its field.
func jsonFields(t reflect.Type) map[string]int {
	if m, ok := fieldIndexes.Load(t); ok {
		return m.(map[string]int)
	}
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		if name := jsonName(t.Field(i)); name != "" && name != "-" {
			m[name] = i
		}
	}
	fieldIndexes.Store(t, m)
	return m
}

var fieldIndexes sync.Map // reflect.Type -> map[string]int

// bindWhole decodes the arguments with encoding/json, after checking their
// names; it words the errors for arguments that are not a JSON object.
func bindWhole(raw []byte, v any) error {
	if err := checkKnown(raw, v); err != nil {
		return err
	}
	err := json.Unmarshal(raw, v)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		name, _, _ := strings.Cut(typeErr.Field, ".")
		return decodeError(v, name, err)
	}
	return decodeError(v, "", err)
}

// decodeError words an error decoding the argument called name.
func decodeError(v any, name string, err error) error {
	var typeErr *json.UnmarshalTypeError
	var argErr argumentError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &argErr):
		return argErr
	case errors.As(err, &typeErr):
		if f, ok := fieldByName(v, name); ok && isInteger(f.Type) {
			if num, ok := strings.CutPrefix(typeErr.Value, "number "); ok {
				return rangeError(name, f, num)
			}
			return rangeError(name, f, "a JSON "+typeErr.Value)
		}
		return fmt.Errorf("argument %q must be %s, not a JSON %s", name, jsonKind(typeErr.Type), typeErr.Value)
	}
	return fmt.Errorf("arguments are not valid JSON: %v", err)
}

// rawArguments returns the arguments as JSON: the wire bytes when the call
// came over a transport, else (an in-process client) their encoding.
func rawArguments(req mcp.CallToolRequest) ([]byte, error) {
	raw := []byte(req.Params.RawArguments)
	if len(raw) == 0 {
		switch a := req.Params.Arguments.(type) {
		case nil:
		case json.RawMessage:
			raw = a
		default:
			b, err := json.Marshal(a)
			if err != nil {
				return nil, fmt.Errorf("arguments could not be read: %v", err)
			}
			raw = b
		}
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return []byte("{}"), nil
	}
	return raw, nil
}

// skipValue is a JSON value checkKnown does not look at: encoding/json
// hands it a slice of the input, so even a huge value is not copied.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// checkKnown rejects argument names the tool does not take (exact case:
// encoding/json would also accept "Command" for "command").
func checkKnown(raw []byte, v any) error {
	var keys map[string]skipValue
	if err := json.Unmarshal(raw, &keys); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("arguments must be a JSON object of named arguments, not a JSON %s", typeErr.Value)
		}
		return fmt.Errorf("arguments are not valid JSON: %v", err)
	}
	known := fieldNames(v)
	for k := range keys {
		if !slices.Contains(known, k) {
			return unknownArgument(firstUnknown(raw, known), known)
		}
	}
	return nil
}

// firstUnknown returns the first name, in the order sent, that the tool
// does not take: of several, the same one every time (a map's order is
// random), and the same one the one-pass binder names.
func firstUnknown(raw []byte, known []string) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.Token() // {
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			break
		}
		k, _ := t.(string)
		if !slices.Contains(known, k) {
			return k
		}
		var skip skipValue
		if dec.Decode(&skip) != nil {
			break
		}
	}
	return ""
}

// unknownArgument words a name the tool does not take, naming those it
// does, or the new name of an old one.
func unknownArgument(k string, known []string) error {
	for _, now := range renamed[k] {
		if slices.Contains(known, now) {
			return fmt.Errorf("argument %q is now called %q; pass %s instead", k, now, now)
		}
	}
	return fmt.Errorf("unknown argument %q; the arguments this tool takes are: %s", k, strings.Join(known, ", "))
}

// renamed maps an argument's old name to its new ones: "offset" was a
// 1-based line in read_file and a 0-based byte in process_output.
var renamed = map[string][]string{"offset": {"start_line", "byte_offset"}}

// argumentError is an argument's own decoder rejecting its value.
type argumentError struct{ msg string }

func (e argumentError) Error() string { return e.msg }

// envVars is a map of environment variables. A null value is an error:
// encoding/json would silently make it "".
type envVars map[string]string

func (e *envVars) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return argumentError{"argument \"env\" must be an object of string values, such as {\"DEBUG\": \"1\"}"}
	}
	if m == nil {
		*e = nil
		return nil
	}
	out := make(envVars, len(m))
	for k, v := range m {
		if string(v) == "null" {
			return argumentError{fmt.Sprintf("env variable %q is null; pass a string (\"\" for an empty value) or leave the variable out", k)}
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return argumentError{fmt.Sprintf("env variable %q must be a string, not %s", k, v)}
		}
		out[k] = s
	}
	*e = out
	return nil
}

// checkRanges checks every integer argument against the minimum and maximum
// of its jsonschema tag, the bounds the schema advertises. Zero is an
// omitted argument and takes the tool's default. The number arguments are
// all seconds, checked by seconds against the server's configured maximum.
func checkRanges(v any) error {
	rv := reflect.ValueOf(v).Elem()
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		fv := rv.Field(i)
		if !fv.CanInt() || fv.IsZero() {
			continue
		}
		if lo, hi := bounds(f); float64(fv.Int()) < lo || float64(fv.Int()) > hi {
			return rangeError(jsonName(f), f, strconv.FormatInt(fv.Int(), 10))
		}
	}
	return nil
}

func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64:
		return true
	}
	return false
}

// bounds reads minimum= and maximum= from a field's jsonschema tag; an
// integer without maximum= is bounded by what its Go type holds.
func bounds(f reflect.StructField) (lo, hi float64) {
	lo, hi = math.Inf(-1), math.Inf(1)
	if isInteger(f.Type) {
		hi = math.MaxInt32 // unless the tag says more
	}
	for _, part := range strings.Split(f.Tag.Get("jsonschema"), ",") {
		k, val, _ := strings.Cut(part, "=")
		n, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch k {
		case "minimum":
			lo = n
		case "maximum":
			hi = n
		}
	}
	return lo, hi
}

// rangeError names the argument's valid range; got is its JSON text.
func rangeError(name string, f reflect.StructField, got string) error {
	lo, hi := bounds(f)
	num := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	var rng string
	switch {
	case math.IsInf(hi, 1):
		rng = "of at least " + num(lo)
	default:
		rng = "from " + num(lo) + " to " + num(hi)
	}
	if x, err := strconv.ParseFloat(got, 64); err == nil && x >= lo && x <= hi {
		rng = "in plain digits (no exponent or fraction), " + rng
	}
	return invalid("argument %q must be an integer %s, got %s (omit it for the default)", name, rng, got)
}

// seconds turns a seconds argument into a duration: def when omitted, an
// error naming the valid range when negative or over max. The check comes
// before the conversion: 1e10 seconds would overflow a time.Duration.
func seconds(name string, v float64, def, most time.Duration) (time.Duration, error) {
	if v == 0 {
		return def, nil
	}
	if !(v > 0 && v <= most.Seconds()) {
		return 0, invalid("argument %q must be from 0 to %v seconds (this server's maximum; 0 or omitted: the default), got %v",
			name, most.Seconds(), v)
	}
	// At least a nanosecond: a zero duration would mean no limit at all.
	return max(time.Duration(v*float64(time.Second)), time.Nanosecond), nil
}

func fieldByName(v any, name string) (reflect.StructField, bool) {
	t := reflect.TypeOf(v).Elem()
	for i := 0; i < t.NumField(); i++ {
		if jsonName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Map:
		return "an object of string values"
	case reflect.Slice:
		return "an array"
	}
	return "a " + t.Kind().String()
}

func fieldNames(v any) []string {
	t := reflect.TypeOf(v).Elem()
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if name := jsonName(t.Field(i)); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}
