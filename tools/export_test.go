package tools

import (
	"encoding/json"
	"reflect"
)

// SchemasForTest returns, for every type a registered tool uses, its
// reflected schema (what schemas.json must hold).
func SchemasForTest() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	schemaTypes.Range(func(k, v any) bool {
		out[k.(string)] = reflectSchema(v.(reflect.Type))
		return true
	})
	return out
}
