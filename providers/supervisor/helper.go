package supervisor

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor/internal/helper"
)

// The helper (internal/helper) is the supervisor of choice: a child
// subreaper, so a kill ends everything a command started however it
// detached. It is uploaded once per sandbox, under the process directory;
// where it cannot run (another architecture, a noexec /tmp, no upload) the
// shell supervisor serves instead, and kills are best-effort there: they
// reach the process group and whatever still carries the process's marker.
//
//go:generate go run github.com/mcp-sandbox/mcp-sandbox/providers/internal/genstatic -pkg ./internal/helper/cmd/mcp-sandbox-supervisor -o helperbin
//go:embed helperbin/linux-amd64.gz helperbin/linux-arm64.gz
var helperFS embed.FS

// helperBin is one architecture's helper, unpacked on first use.
type helperBin struct {
	file string
	once sync.Once
	raw  []byte
	sum  string
}

func (h *helperBin) load() ([]byte, string) {
	h.once.Do(func() {
		z, err := helperFS.ReadFile("helperbin/" + h.file)
		if err != nil {
			return
		}
		r, err := gzip.NewReader(bytes.NewReader(z))
		if err != nil {
			return
		}
		raw, err := io.ReadAll(r)
		if err != nil {
			return
		}
		sum := sha256.Sum256(raw)
		h.raw, h.sum = raw, hex.EncodeToString(sum[:])
	})
	return h.raw, h.sum
}

// name is the helper's file name in the sandbox: by content, so servers
// of different versions never run each other's.
func (h *helperBin) name() string {
	_, sum := h.load()
	if sum == "" {
		return "mcp-sandbox-supervisor-missing"
	}
	return "mcp-sandbox-supervisor-" + sum[:16]
}

var helperBins = map[string]*helperBin{
	"x86_64":  {file: "linux-amd64.gz"},
	"amd64":   {file: "linux-amd64.gz"},
	"aarch64": {file: "linux-arm64.gz"},
	"arm64":   {file: "linux-arm64.gz"},
}

// helperProbe prints "have <path>" when the helper $1 is in place and its
// check prints $2, else "arch <machine>".
const helperProbe = procPrelude + `
f=$b/.bin/$1
if [ -x "$f" ] && [ "$("$f" check 2>/dev/null)" = "$2" ]; then echo "have $f"; exit 0; fi
printf 'arch %s\n' "$(uname -m 2>/dev/null)"`

// helperUpload writes its stdin as the helper $1 whose check must print
// $2 (the whole file arrived and runs here), and says "ok <path>", or why not.
const helperUpload = procPrelude + `
mkdir -p "$b/.bin" 2>/dev/null && chmod 755 "$b" "$b/.bin" 2>/dev/null
t=$b/.bin/.up.$$
cat >"$t" 2>/dev/null || { rm -f "$t"; echo "cannot write under $b"; exit 0; }
chmod 755 "$t"
s=$("$t" check 2>&1) || { rm -f "$t"; echo "cannot run it there: $s"; exit 0; }
[ "$s" = "$2" ] || { n=$(wc -c <"$t"); rm -f "$t"; echo "it arrived damaged ($n bytes)"; exit 0; }
mv -f "$t" "$b/.bin/$1" && echo "ok $b/.bin/$1"`

// helperIn is what a sandbox has: the start function's SUPERVISOR
// argument (the helper when the sandbox has one, else the shell
// supervisor), and the helper's path there. The answer is cached per
// sandbox: a sandbox's architecture and mounts do not change, and a helper
// that went missing is caught by the start (see forgetHelper).
type helperIn struct{ arg, path string }

func (s *Supervisor) helper(ctx context.Context, id string) helperIn {
	if v, ok := s.helpers.Load(id); ok {
		return v.(helperIn)
	}
	in := helperIn{arg: procSupervisor}
	name, path, err := s.installHelper(ctx, id)
	var pe *providers.Error
	if errors.Is(err, providers.ErrNotFound) || errors.Is(err, context.Canceled) || (errors.As(err, &pe) && !errors.Is(err, providers.ErrUnsupported)) {
		// The sandbox is gone or did not answer: the start will say so; the
		// next one asks again.
		return in
	}
	if err != nil {
		s.log.Warn("the sandbox runs processes under the shell supervisor: kills are best-effort there (the process group and what keeps the process's marker)", "sandbox", id, "reason", err)
	} else {
		in = helperIn{arg: "helper:" + name, path: path}
	}
	s.helpers.Store(id, in)
	return in
}

// HelperPath installs the helper in the sandbox if it is not there yet and
// returns its absolute path there, or "" where it cannot run. A driver can
// run it as "HELPER serve" for a long-lived channel into the sandbox (see
// internal/helper/serve.go and ServeFrames).
func (s *Supervisor) HelperPath(ctx context.Context, id string) string {
	return s.helper(ctx, id).path
}

// KnownHelperPath is the helper's path in the sandbox when the supervisor
// has already found or uploaded it, else "": it never asks the sandbox.
func (s *Supervisor) KnownHelperPath(id string) string {
	if v, ok := s.helpers.Load(id); ok {
		return v.(helperIn).path
	}
	return ""
}

func (s *Supervisor) forgetHelper(id string) { s.helpers.Delete(id) }

type helperError string

func (e helperError) Error() string { return string(e) }

// installHelper makes sure the sandbox has the helper for its machine and
// returns its name and path.
func (s *Supervisor) installHelper(ctx context.Context, id string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	amd := helperBins["x86_64"]
	out, err := s.script(ctx, id, "probe", helperProbe, 4<<10, nil, amd.name(), amd.sumOf())
	if err != nil {
		return "", "", err
	}
	answer := strings.TrimSpace(string(out))
	if path, ok := strings.CutPrefix(answer, "have "); ok {
		return amd.name(), path, nil
	}
	machine, _ := strings.CutPrefix(answer, "arch ")
	bin := helperBins[machine]
	if bin == nil {
		return "", "", helperError("no helper for machine " + strconv.Quote(machine))
	}
	if bin != amd {
		// Another machine: the probe looked for the wrong file.
		out, err := s.script(ctx, id, "probe", helperProbe, 4<<10, nil, bin.name(), bin.sumOf())
		if err != nil {
			return "", "", err
		}
		if path, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "have "); ok {
			return bin.name(), path, nil
		}
	}
	raw, sum := bin.load()
	if raw == nil {
		return "", "", helperError("the helper for " + machine + " is not built into this server")
	}
	out, err = s.script(ctx, id, "upload", helperUpload, 4<<10, bytes.NewReader(raw), bin.name(), sum)
	if err != nil {
		return "", "", err
	}
	path, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "ok ")
	if !ok {
		return "", "", helperError("upload: " + strings.TrimSpace(string(out)))
	}
	return bin.name(), path, nil
}

func (h *helperBin) sumOf() string {
	_, sum := h.load()
	return sum
}

// Main runs the in-sandbox helper (see internal/helper), for a binary that
// wants to be it: the embedded copy is built from the same code, and a
// driver whose sandbox shares this machine (local) can run its own
// executable in this mode instead of uploading.
func Main(args []string) int { return helper.Main(args) }

// HelperDir is where the helper lives, below the sandbox's ${TMPDIR:-/tmp}.
const HelperDir = procDir + "/.bin"

// HelperFile returns the helper for a machine (as `uname -m` names it):
// its file name in HelperDir and its bytes. A driver that can put a file
// in the sandbox in one call uploads it there itself, with mode 0755, to
// run commands through the helper's exec mode (see internal/helper's
// runExec); the supervisor then finds it in place.
func HelperFile(machine string) (name string, data []byte, ok bool) {
	bin := helperBins[machine]
	if bin == nil {
		return "", nil, false
	}
	raw, _ := bin.load()
	if raw == nil {
		return "", nil, false
	}
	return bin.name(), raw, true
}
