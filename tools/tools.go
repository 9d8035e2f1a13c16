// Package tools is the MCP surface of mcp-sandbox: one file per tool family,
// typed arguments and results reflected into JSON Schema, and handlers that
// go through the session manager (ownership, current sandbox) to a provider.
package tools

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/invopop/jsonschema"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/session"
)

// Limits bound what one call may return or accept.
type Limits struct {
	// MaxOutputBytes caps each of stdout and stderr in a run_command result.
	MaxOutputBytes int
	// MaxReadBytes caps the size of a file read_file will open.
	MaxReadBytes int64
	// MaxReturnBytes caps the text read_file returns in one call.
	MaxReturnBytes int
	// MaxWriteBytes caps the content write_file accepts.
	MaxWriteBytes int
	// MaxListEntries caps list_files.
	MaxListEntries int
	// DefaultTimeout and MaxTimeout bound run_command.
	DefaultTimeout, MaxTimeout time.Duration
	// Wait is how long run_command waits for a command before returning a
	// process handle (below the usual 60 s client timeout); it also caps
	// the waits process_output may ask for.
	Wait time.Duration
	// MaxProcessOutputBytes caps the output kept on disk per stream of each
	// process (head and tail), for paging with process_output.
	MaxProcessOutputBytes int64
}

// DefaultLimits are sized for a model's context window.
var DefaultLimits = Limits{
	MaxOutputBytes: 64 << 10,
	MaxReadBytes:   32 << 20,
	MaxReturnBytes: 256 << 10,
	MaxWriteBytes:  32 << 20,
	MaxListEntries: 1000,
	DefaultTimeout: 120 * time.Second,
	MaxTimeout:     time.Hour,
	Wait:           45 * time.Second,

	MaxProcessOutputBytes: 64 << 20,
}

// Register adds every sandbox tool to s.
func Register(s *server.MCPServer, m *session.Manager, lim Limits) {
	h := &handlers{m: m, lim: lim}
	s.AddTools(
		h.sandboxCreate(), h.sandboxList(), h.sandboxDestroy(),
		h.runCommand(),
		h.readFile(), h.writeFile(), h.editFile(), h.listFiles(),
		h.processStart(), h.processList(), h.processOutput(), h.processWriteStdin(), h.processKill(),
	)
}

type handlers struct {
	m   *session.Manager
	lim Limits
}

type progressTokenKey struct{}

// progressToken is the token the call asked progress notifications under,
// or nil.
func progressToken(ctx context.Context) mcp.ProgressToken {
	return ctx.Value(progressTokenKey{})
}

// sessionID names the MCP session a call belongs to.
func sessionID(ctx context.Context) string {
	if cs := server.ClientSessionFromContext(ctx); cs != nil {
		return cs.SessionID()
	}
	return ""
}

// schema returns the inline JSON Schema of a Go type. Reflecting and
// marshalling every tool's schemas costs about 4 ms, a quarter of the
// server's start-up, so they are generated once into schemas.json (embedded)
// and reflected only for a type missing there. TestSchemasAreCurrent fails
// when the file is stale; UPDATE_TOOLSNAPS=1 go test ./tools rewrites it.
func schema(v any) json.RawMessage {
	t := reflect.TypeOf(v)
	schemaTypes.Store(t.String(), t)
	if b, ok := generatedSchemas()[t.String()]; ok {
		return b
	}
	return reflectSchema(t)
}

//go:embed schemas.json
var schemasJSON []byte

// schemaTypes records every type a tool uses, for the staleness test.
var schemaTypes sync.Map // type name -> reflect.Type

var generatedSchemas = sync.OnceValue(func() map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(schemasJSON, &m); err != nil {
		panic("tools: schemas.json: " + err.Error())
	}
	return m
})

func reflectSchema(t reflect.Type) json.RawMessage {
	r := &jsonschema.Reflector{DoNotReference: true, ExpandedStruct: true}
	s := r.ReflectFromType(t)
	s.Version, s.ID = "", ""
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("tools: schema for %v: %v", t, err))
	}
	return b
}

// newTool builds a tool from typed args and result. NewTool pre-fills an
// input schema that would clash with the raw one, so it is cleared here.
func newTool(name, title, desc string, args, result any, ann mcp.ToolAnnotation) mcp.Tool {
	t := mcp.NewTool(name, mcp.WithDescription(desc), mcp.WithToolAnnotation(ann))
	t.Title = title
	t.Annotations.Title = title
	t.InputSchema = mcp.ToolInputSchema{}
	t.RawInputSchema = schema(args)
	t.RawOutputSchema = schema(result)
	return t
}

// typed binds arguments into A and maps errors to isError results; a
// handler returns its result, a text rendering and extra content.
func typed[A any](fn func(ctx context.Context, sid string, args A) (*mcp.CallToolResult, error)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args A
		if err := bind(req, &args); err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		if m := req.Params.Meta; m != nil && m.ProgressToken != nil {
			ctx = context.WithValue(ctx, progressTokenKey{}, m.ProgressToken)
		}
		res, err := fn(ctx, sessionID(ctx), args)
		if err != nil {
			return errorResult(err), nil
		}
		return res, nil
	}
}

// bind decodes the call's arguments strictly: a misspelt or unknown
// argument is an error the model can correct, not something silently ignored.
func bind(req mcp.CallToolRequest, v any) error {
	raw, err := json.Marshal(req.Params.Arguments)
	if err != nil {
		return fmt.Errorf("arguments could not be read: %v", err)
	}
	if string(raw) == "null" {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		return fmt.Errorf("argument %q must be %s, not a JSON %s", typeErr.Field, jsonKind(typeErr.Type), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return fmt.Errorf("unknown argument %s; the arguments this tool takes are: %s", name, strings.Join(fieldNames(v), ", "))
	}
	return fmt.Errorf("arguments are not valid: %v", err)
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
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// result pairs structured content with a text rendering for clients that
// show only text.
func result(structured any, text string, extra ...mcp.Content) *mcp.CallToolResult {
	return &mcp.CallToolResult{
		Content:           append([]mcp.Content{mcp.NewTextContent(text)}, extra...),
		StructuredContent: structured,
	}
}

// errorResult words a failure so the model can act on it.
func errorResult(err error) *mcp.CallToolResult {
	msg := err.Error()
	switch {
	case errors.Is(err, context.Canceled):
		msg = "the call was cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		msg = "the call timed out: " + msg
	case errors.Is(err, session.ErrUnknownSandbox):
		msg += "; call sandbox_list to see yours, or omit sandbox_id to use the current one"
	case errors.Is(err, session.ErrLimit):
		msg += "; destroy one with sandbox_destroy first"
	case errors.Is(err, session.ErrEnded):
		msg += "; reconnect to start a new session"
	case errors.Is(err, providers.ErrUnavailable):
		msg = "the sandbox provider failed: " + msg + " (this may be temporary; retry, or create a new sandbox)"
	}
	return mcp.NewToolResultError(msg)
}

func invalid(format string, args ...any) error {
	return providers.Errorf(providers.ErrInvalidArgument, format, args...)
}

func ptr[T any](v T) *T { return &v }

// behaviour is what a tool's annotations say of it. Every hint is set
// explicitly, false included: mcp-go's defaults (destructive, open world)
// are wrong for most sandbox tools.
type behaviour struct {
	ReadOnly, Destructive, Idempotent, OpenWorld bool
}

func (b behaviour) annotation() mcp.ToolAnnotation {
	return mcp.ToolAnnotation{ReadOnlyHint: &b.ReadOnly, DestructiveHint: &b.Destructive, IdempotentHint: &b.Idempotent, OpenWorldHint: &b.OpenWorld}
}
