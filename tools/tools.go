// Package tools is the MCP surface of mcp-sandbox: one file per tool family,
// typed arguments and results reflected into JSON Schema, and handlers that
// go through the session manager (ownership, current sandbox) to a provider.
package tools

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/invopop/jsonschema"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

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
	// MaxCallsPerSession bounds the tool calls one session runs at once
	// (0: no bound); a call over it is refused at once rather than queued,
	// so a cheap call never waits behind long ones.
	MaxCallsPerSession int
}

// maxWait caps every wait_seconds, whatever the server's settings: the
// official TypeScript SDK gives up on a request after 60 s, so a longer wait
// would be cut by the client, not returned.
const maxWait = 50 * time.Second

// processWait is the longest wait process_output allows: the server's
// --wait-seconds, within maxWait.
func (h *handlers) processWait() time.Duration { return min(h.lim.Wait, maxWait) }

// waitHint is a wait_seconds to suggest in a result: preferred, unless the
// server allows less. A hint the server would refuse is worse than none.
func (h *handlers) waitHint(preferred time.Duration) string {
	return strconv.FormatFloat(min(preferred, h.processWait()).Seconds(), 'f', -1, 64)
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
	MaxCallsPerSession:    64,
}

// Register adds every sandbox tool to s.
func Register(s *server.MCPServer, m *session.Manager, lim Limits) {
	h := &handlers{m: m, lim: lim, running: map[string]int{}}
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

	mu      sync.Mutex
	running map[string]int // session -> tool calls in flight

	flights flights // run_command calls not yet processes
}

// enter counts a call against its session's bound; leave undoes it.
func (h *handlers) enter(sid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.running[sid]; h.lim.MaxCallsPerSession > 0 && n >= h.lim.MaxCallsPerSession {
		return fmt.Errorf(
			"this session already has %d tool calls running, the most it may run at once; wait for one to finish, or stop a long command with process_kill, then retry", n)
	}
	h.running[sid]++
	return nil
}

func (h *handlers) leave(sid string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running[sid]--; h.running[sid] <= 0 {
		delete(h.running, sid)
	}
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
func typed[A any](h *handlers, fn func(ctx context.Context, sid string, args A) (*mcp.CallToolResult, error)) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		var args A
		if err := bind(req, &args); err != nil {
			return mcp.NewToolResultError(escapeControls(err.Error())), nil
		}
		if m := req.Params.Meta; m != nil && m.ProgressToken != nil {
			ctx = context.WithValue(ctx, progressTokenKey{}, m.ProgressToken)
		}
		sid := sessionID(ctx)
		if err := h.enter(sid); err != nil {
			return errorResult(err), nil
		}
		defer h.leave(sid)
		res, err := fn(ctx, sid, args)
		if err != nil {
			return errorResult(err), nil
		}
		return res, nil
	}
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
	case errors.Is(err, syscall.E2BIG) || strings.Contains(msg, "argument list too long"):
		// Retrying cannot help: the command line is over the kernel's limit
		// (128 KiB for one argument on Linux). Remote drivers pass the text.
		msg = "the command is too long to start (" + msg + "): a command line, including its environment, is limited by the kernel (128 KiB per argument on Linux); " +
			"write the script to a file with write_file and run it with `sh script.sh`, or pass large data in a file or through stdin"
	case errors.Is(err, providers.ErrUnavailable):
		msg = "the sandbox provider failed: " + msg + " (this may be temporary; retry, or create a new sandbox)"
	}
	// Messages quote paths and names the sandbox chose: keep them one line.
	return mcp.NewToolResultError(escapeControls(msg))
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
