package modalfake_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/nodesdk"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
	"github.com/mcp-sandbox/mcp-sandbox/providers/modal/modalfake"
)

// TestOfficialSDKAgainstFake runs Modal's own JS SDK through app, image,
// sandbox create, exec (exit codes, stdout/stderr, stdin, signals), a
// byte-exact binary file round trip and terminate against the fake;
// contract.mjs asserts every result.
func TestOfficialSDKAgainstFake(t *testing.T) {
	node := nodesdk.Node(t)
	dir := nodesdk.SDKDir(t, "sdktest", "modal")
	fake, err := modalfake.New(modalfake.Options{TokenID: "ak-contract", TokenSecret: "as-contract"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	url, err := fake.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "contract.mjs")
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"MODAL_CONFIG_PATH=" + filepath.Join(home, "absent.toml"),
		"MODAL_SERVER_URL=" + url,
		"MODAL_TOKEN_ID=ak-contract",
		"MODAL_TOKEN_SECRET=as-contract",
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "contract ok") {
		t.Fatalf("contract.mjs failed: %v\n%s", err, out)
	}
	if left := fake.Sandboxes(); len(left) != 0 {
		t.Fatalf("the SDK terminated its sandbox, but the fake still runs %d", len(left))
	}
	for _, m := range []string{"SandboxCreateV2", "ImageJoinStreaming", "TaskExecStdinWriteStream", "SandboxGetCommandRouterAccess", "SandboxTerminateV2"} {
		if fake.Calls(m) == 0 {
			t.Errorf("the SDK never called %s; the contract no longer covers it", m)
		}
	}
}

// tsField is what the SDK's generated encoder says about one field.
type tsField struct {
	number   int
	wireType int
	writer   string // scalar writer method ("string", "uint32", ...) or "" for messages
	message  string // message type for message fields
	presence bool   // compared against undefined: optional, oneof member or message
	repeated bool
	isMap    bool
}

// sdkEncoders reads the ts-proto encoders in the SDK's bundle: for each
// message, its fields by camelCase name.
func sdkEncoders(t *testing.T, js string) map[string]map[string]tsField {
	t.Helper()
	msgRe := regexp.MustCompile(`(?s)\nvar (\w+) = \{\n  encode\((?:message|_), writer = new BinaryWriter\(\)\) \{\n(.*?)\n  \},\n  decode\(`)
	scalarRe := regexp.MustCompile(`writer\.uint32\((\d+)\)\.(\w+)\(`)
	msgFieldRe := regexp.MustCompile(`(\w+)\.encode\((?:v|message\.\w+|\{ key, value \}), writer\.uint32\((\d+)\)\.fork\(\)\)`)
	out := map[string]map[string]tsField{}
	for _, m := range msgRe.FindAllStringSubmatch(js, -1) {
		fields := map[string]tsField{}
		var cur string
		var presence, repeated, isMap bool
		for _, line := range strings.Split(m[2], "\n") {
			line = strings.TrimSpace(line)
			if n := regexp.MustCompile(`message\.(\w+)`).FindStringSubmatch(line); n != nil && (strings.HasPrefix(line, "if ") || strings.HasPrefix(line, "for ") || strings.HasPrefix(line, "Object.entries")) {
				cur = n[1]
				presence = strings.Contains(line, "!== void 0")
				repeated = strings.HasPrefix(line, "for ")
				isMap = strings.HasPrefix(line, "Object.entries")
			}
			var f tsField
			if s := msgFieldRe.FindStringSubmatch(line); s != nil {
				tag, _ := strconv.Atoi(s[2])
				f = tsField{number: tag >> 3, wireType: tag & 7, message: s[1]}
			} else if s := scalarRe.FindStringSubmatch(line); s != nil && s[2] != "fork" {
				tag, _ := strconv.Atoi(s[1])
				f = tsField{number: tag >> 3, wireType: tag & 7, writer: s[2]}
			} else {
				continue
			}
			f.presence, f.repeated, f.isMap = presence, repeated, isMap
			fields[cur] = f
		}
		out[m[1]] = fields
	}
	return out
}

// tsName is ts-proto's name for a message: nested messages joined by "_".
func tsName(md protoreflect.MessageDescriptor) string {
	name := string(md.Name())
	for p := md.Parent(); p != nil; p = p.Parent() {
		if pm, ok := p.(protoreflect.MessageDescriptor); ok {
			name = string(pm.Name()) + "_" + name
		}
	}
	return name
}

func camel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

var writerFor = map[protoreflect.Kind]string{
	protoreflect.StringKind: "string", protoreflect.BytesKind: "bytes", protoreflect.BoolKind: "bool",
	protoreflect.Int32Kind: "int32", protoreflect.Uint32Kind: "uint32", protoreflect.Int64Kind: "int64",
	protoreflect.Uint64Kind: "uint64", protoreflect.FloatKind: "float", protoreflect.DoubleKind: "double",
	protoreflect.EnumKind: "int32",
}

// TestProtoMatchesSDK checks every message and field of our trimmed .proto
// files against the encoders generated into the official SDK (ts-proto
// embeds no descriptors): same field numbers, wire types, scalar types,
// message types, presence and cardinality; and every RPC against the SDK's
// service definitions.
func TestProtoMatchesSDK(t *testing.T) {
	dir := nodesdk.SDKDir(t, "sdktest", "modal")
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "modal", "dist", "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	enc := sdkEncoders(t, js)
	if len(enc) < 500 {
		t.Fatalf("found only %d encoders in the SDK bundle; has its layout changed?", len(enc))
	}
	checked := 0
	var check func(md protoreflect.MessageDescriptor)
	check = func(md protoreflect.MessageDescriptor) {
		if md.IsMapEntry() {
			return
		}
		name := tsName(md)
		theirs, ok := enc[name]
		if !ok {
			t.Errorf("message %s: the SDK has no message %s", md.FullName(), name)
			return
		}
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			what := string(md.FullName()) + "." + string(fd.Name())
			tf, ok := theirs[camel(string(fd.Name()))]
			if !ok {
				t.Errorf("%s: the SDK's %s has no field %s", what, name, camel(string(fd.Name())))
				continue
			}
			checked++
			if int(fd.Number()) != tf.number {
				t.Errorf("%s: number %d, the SDK's is %d", what, fd.Number(), tf.number)
			}
			switch {
			case fd.IsMap():
				if !tf.isMap {
					t.Errorf("%s: a map here, not in the SDK", what)
				}
			case fd.Kind() == protoreflect.MessageKind:
				if tf.message != tsName(fd.Message()) || tf.repeated != fd.IsList() {
					t.Errorf("%s: message %s (repeated %v), the SDK's is %q (repeated %v)", what, tsName(fd.Message()), fd.IsList(), tf.message, tf.repeated)
				}
			default:
				if tf.writer != writerFor[fd.Kind()] || tf.repeated != fd.IsList() {
					t.Errorf("%s: %s (repeated %v), the SDK writes %q (repeated %v)", what, fd.Kind(), fd.IsList(), tf.writer, tf.repeated)
				}
				if tf.presence != fd.HasPresence() {
					t.Errorf("%s: presence %v, the SDK's %v", what, fd.HasPresence(), tf.presence)
				}
			}
		}
		for i := 0; i < md.Messages().Len(); i++ {
			check(md.Messages().Get(i))
		}
	}
	for _, file := range []protoreflect.FileDescriptor{pb.File_modal_proto_api_proto, pb.File_modal_proto_task_command_router_proto} {
		for i := 0; i < file.Messages().Len(); i++ {
			check(file.Messages().Get(i))
		}
		for i := 0; i < file.Services().Len(); i++ {
			sd := file.Services().Get(i)
			defRe := regexp.MustCompile(`(?s)var ` + string(sd.Name()) + `Definition = \{\n  name: "` + string(sd.Name()) + `",\n  fullName: "` + regexp.QuoteMeta(string(sd.FullName())) + `",`)
			loc := defRe.FindStringIndex(js)
			if loc == nil {
				t.Errorf("the SDK defines no service %s", sd.FullName())
				continue
			}
			for j := 0; j < sd.Methods().Len(); j++ {
				m := sd.Methods().Get(j)
				re := regexp.MustCompile(`name: "` + string(m.Name()) + `",\n\s*requestType: (\w+),\n\s*requestStream: (\w+),\n\s*responseType: (\w+),\n\s*responseStream: (\w+),`)
				s := re.FindStringSubmatch(js[loc[0]:])
				if s == nil {
					t.Errorf("the SDK's %s has no method %s", sd.FullName(), m.Name())
					continue
				}
				want := []string{tsName(m.Input()), strconv.FormatBool(m.IsStreamingClient()), tsName(m.Output()), strconv.FormatBool(m.IsStreamingServer())}
				if got := s[1:]; strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("%s/%s: ours is %v, the SDK's %v", sd.FullName(), m.Name(), want, got)
				}
			}
		}
	}
	t.Logf("checked %d fields against the SDK", checked)
}
