package runloop

import (
	"context"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Commands run through the supervisor's helper (its exec mode, base64
// lines) where it can run: one process between the devbox's shell and the
// command, where the shell wrapper needs a dd and a base64 per chunk of
// output, FIFOs and relays; and a kill ends everything the command
// started. The driver uploads it to the devbox's TMPDIR once, where the
// supervisor also looks for it; the first command makes it executable.
// Where it cannot run (another machine, a noexec TMPDIR), the shell
// wrapper serves.

// Whether a devbox's commands go through the helper: devboxInfo.helper.
const (
	helperReady int32 = iota
	helperUnusable
)

// helperMachine is the machine devboxes run on by default.
const helperMachine = "x86_64"

func (in *devboxInfo) helperPath(name string) string {
	return path.Join(in.tmp, supervisor.HelperDir, name)
}

// installHelper uploads the helper into the devbox; a failure leaves
// commands to the shell wrapper.
func (p *Provider) installHelper(ctx context.Context, id string, in *devboxInfo) {
	name, data, ok := supervisor.HelperFile(helperMachine)
	if !ok {
		p.setHelper(in, helperUnusable, false)
		return
	}
	if err := p.upload(ctx, id, in.helperPath(name), data); err != nil {
		p.log.Info("runloop: commands run through the shell wrapper: the helper could not be uploaded", "devbox", id, "err", err)
		p.setHelper(in, helperUnusable, false)
		return
	}
	p.setHelper(in, helperReady, true)
}

func (p *Provider) setHelper(in *devboxInfo, state int32, uploaded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in.helper = state
	in.uploaded = in.uploaded || uploaded
}

func (p *Provider) helperState(in *devboxInfo) (state int32, uploaded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return in.helper, in.uploaded
}

// helperCommand is the command line that runs req through the helper,
// making it executable first if it is not yet (a test, no process, once
// it is); pid is where the helper records its pid, for a kill.
func (in *devboxInfo) helperCommand(name, pid string, req providers.ExecRequest) string {
	h := shellQuote(in.helperPath(name))
	var b strings.Builder
	b.WriteString("[ -x " + h + " ] || chmod 755 " + h + " 2>/dev/null; exec " + h + " exec -enc b64 -pid " + shellQuote(pid))
	if req.Stdin != nil {
		b.WriteString(" -stdin")
	}
	if req.Timeout > 0 {
		b.WriteString(" -timeout " + strconv.FormatFloat(max(req.Timeout, time.Millisecond).Seconds(), 'f', 3, 64))
	}
	if req.Cwd != "" {
		b.WriteString(" -cwd " + shellQuote(req.Cwd))
	}
	b.WriteString(" -- " + shellQuote(req.Command))
	for _, k := range slices.Sorted(maps.Keys(req.Env)) {
		b.WriteString(" " + shellQuote(k+"="+req.Env[k]))
	}
	return b.String()
}

// killHelper asks the helper whose pid is in the file pid to kill
// everything its command started.
func (p *Provider) killHelper(ctx context.Context, id, pid string) error {
	kctx, cancel := detached(ctx)
	defer cancel()
	_, err := p.quick(kctx, id, "read p <"+shellQuote(pid)+" && kill -USR2 \"$p\"")
	return err
}
