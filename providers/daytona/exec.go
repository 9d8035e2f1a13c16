package daytona

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// A command runs as an asynchronous command of its own daemon session, and
// its output comes back over the session's log websocket. The daemon labels
// that log line by line (each line behind a stdout or stderr marker, NUL
// bytes lost, a newline added to a last line without one), so the command
// is wrapped: by the helper (see helper.go), or where it cannot run by this
// shell wrapper, which speaks the same escapes. The command runs in its own process group (setsid) with its output in
// files, which tail --pid follows until it exits; sed escapes the bytes the
// labelling would lose or misread (a line at a time: stdbuf -oL), and each
// stream ends with an end mark (stdout's carries the exit status).
// The driver undoes the escaping, so output arrives byte-exact and as it is
// produced (a line at a time). Stdin travels through the session's input
// route as base64 lines, ended by a "." line; a short line is followed by
// empty ones (which base64 -d skips) so that base64 -d, which decodes in
// blocks, passes it on at once.
//
// Arguments: $1 scratch path prefix, $2 cwd, $3 command, $4 "1" when
// stdin comes, then NAME=value pairs for env. Forks are few: each costs
// time on a busy sandbox.
const wrapper = `printf '\\s'; printf '\\s' >&2
d=$1 cwd=$2 cmd=$3 in=$4; shift 4
: >"$d.out" && : >"$d.err" || exit 125
if [ -n "$in" ]; then
	mkfifo "$d.in" || exit 125
	exec 3<&0 # an asynchronous list would read /dev/null
	{ stdbuf -oL sed -n '/^\.$/q;p' | stdbuf -o0 base64 -d >"$d.in"; } <&3 3<&- &
	exec 3<&-
	in="$d.in"
else
	in=/dev/null
fi
cd -- "$cwd" || exit 125
[ $# -eq 0 ] || set -- env -- "$@"
setsid "$@" sh -c 'echo $$ >"$1.pgid"; exec <"$3" >>"$1.out" 2>>"$1.err"; eval "set --; $2"' sh "$d" "$cmd" "$in" &
pid=$!
E='s/\\/\\\\/g;s/\x00/\\0/g;s/\x01/\\1/g;s/\x02/\\2/g'
tail -s 0.05 -c +1 -f --pid=$pid "$d.out" | stdbuf -oL sed "$E" &
o=$!
tail -s 0.05 -c +1 -f --pid=$pid "$d.err" | stdbuf -oL sed "$E" >&2 &
e=$!
wait $pid; rc=$?
wait $o; wait $e
printf '\\e%s\n' "$rc"; printf '\\e\n' >&2
rm -f "$d.out" "$d.err" "$d.in" "$d.pgid" >/dev/null 2>&1 &
exit $rc`

// killScript asks the helper whose pid is in $1.pid to kill everything its
// command started, or kills the process group the wrapper recorded in
// $1.pgid, waiting briefly for either to be recorded. It waits (5 s at
// most) for the helper to be gone, which it is once its kill is done: the
// session's deletion that follows a kill takes the helper with it, and a
// helper taken before it has killed leaves the command running.
const killScript = `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	if [ -s "$1.pid" ]; then
		p=$(cat "$1.pid") && kill -USR2 "$p" || exit 1
		i=0; while [ $i -lt 100 ] && kill -0 "$p" 2>/dev/null; do sleep 0.05; i=$((i+1)); done
		exit 0
	fi
	[ -s "$1.pgid" ] && break; sleep 0.05
done
kill -9 -"$(cat "$1.pgid")"`

// scratchPrefix starts the names of each command's files while it runs.
const scratchPrefix = "/tmp/.mcp-sandbox-exec-"

// stdinChunk is the most stdin one input call carries.
const stdinChunk = 48 << 10

// decodeBlock is what GNU base64 -d reads before it decodes (the base64
// length of its 4200-byte block); a shorter line is padded with newlines.
const decodeBlock = 5600

func randomTag() string {
	b := make([]byte, 12)
	crand.Read(b)
	return hex.EncodeToString(b)
}

func (p *Provider) Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error) {
	if err := providers.ValidateEnv(req.Env); err != nil {
		return providers.ExecResult{}, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.ExecResult{}, err
	}
	cwd := c.workdir
	if req.Cwd != "" {
		cwd = c.resolve(req.Cwd)
		if err := p.checkCwd(ctx, id, req.Cwd, cwd); err != nil {
			return providers.ExecResult{}, err
		}
	}
	select {
	case <-c.installed:
	case <-ctx.Done():
		return providers.ExecResult{}, ctx.Err()
	}
	if name, _, ok := supervisor.HelperFile(helperMachine); ok && c.helper.Load() == helperReady {
		res, ran, err := p.run(ctx, id, req, true, func(dir string) string { return c.helperCommand(name, dir, cwd, req) })
		if ran || err != nil {
			return res, err
		}
		// The helper did not start (removed, or it cannot run here): the
		// command did not run either, and the wrapper serves from now on.
		p.log.Info("daytona: commands run through the shell wrapper: the helper did not start", "sandbox", id)
		c.helper.Store(helperUnusable)
	}
	res, _, err := p.run(ctx, id, req, false, func(dir string) string {
		args := []string{dir, cwd, req.Command, ""}
		if req.Stdin != nil {
			args[3] = "1"
		}
		for _, k := range slices.Sorted(maps.Keys(req.Env)) {
			args = append(args, k+"="+req.Env[k])
		}
		return shellCommand(wrapper, args...)
	})
	return res, err
}

// timeoutGrace is how long past a command's timeout the helper may take to
// end it and deliver its output before Exec kills it itself.
const timeoutGrace = 3 * time.Second

// run runs the session command that command(scratch prefix) builds and
// follows its output; ran is false when the helper (byHelper) never
// started, so the command did not run.
func (p *Provider) run(ctx context.Context, id string, req providers.ExecRequest, byHelper bool, command func(dir string) string) (res providers.ExecResult, ran bool, err error) {
	tag := randomTag()
	dir := scratchPrefix + tag
	began := time.Now()
	r, err := p.startCommand(ctx, id, dir, command(dir))
	if err != nil {
		return providers.ExecResult{}, true, err
	}
	defer func() { go r.close() }() // the caller need not wait for the session's deletion

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if req.Timeout > 0 {
		limit := req.Timeout
		if byHelper {
			limit += timeoutGrace // the helper keeps the time itself
		}
		runCtx, cancel = context.WithTimeout(ctx, limit)
	}
	defer cancel()
	if req.Stdin != nil {
		go r.feed(runCtx, req.Stdin)
	}
	out := newDemux(req.Stdout, req.Stderr)
	streamDone := make(chan error, 1)
	go func() { streamDone <- r.follow(out) }()

	res = providers.ExecResult{ExitCode: -1}
	var streamErr error
	select {
	case streamErr = <-streamDone:
	case <-runCtx.Done():
		p.kill(ctx, id, dir)
		// The command's end is noticed and the streams end; wait for what
		// was already printed, but not for long.
		select {
		case <-streamDone:
		case <-time.After(5 * time.Second):
			r.ws.Close()
			<-streamDone
		}
		res.Duration = time.Since(began)
		if ctx.Err() != nil {
			return res, true, ctx.Err()
		}
		res.TimedOut = true
		return res, true, nil
	}
	res.Duration = time.Since(began)
	if byHelper && streamErr == nil && !out.started() {
		return res, false, nil
	}
	if !out.ended() {
		if g := p.gone(ctx, id); g != nil {
			return res, true, g
		}
		p.kill(ctx, id, dir)
		why := "ended"
		if streamErr != nil {
			why = "broke (" + streamErr.Error() + ")"
		}
		return res, true, providers.Errorf(providers.ErrUnavailable,
			"the output stream of the command in sandbox %s %s before the command ended; the command was killed, run it again (if this repeats, the sandbox's image may lack GNU tail, sed, stdbuf, setsid or base64)", id, why)
	}
	switch out.report {
	case "nodir":
		return res, true, providers.Errorf(providers.ErrNotFound, "cwd %q: no such directory", req.Cwd)
	case "notdir":
		return res, true, providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", req.Cwd)
	}
	res.TimedOut = out.timedOut
	if code, ok := out.exitCode(); ok {
		res.ExitCode = code
		return res, true, nil
	}
	code, err := r.exitCode(ctx) // the daemon's record, when the mark lacks it
	if err != nil {
		return res, true, p.toolboxErr(ctx, id, "run command in", req.Cwd, err)
	}
	res.ExitCode = code
	return res, true, nil
}

// checkCwd explains a cwd that is missing or not a directory.
func (p *Provider) checkCwd(ctx context.Context, id, given, abs string) error {
	fi, err := p.info(ctx, id, abs)
	switch {
	case errors.Is(err, providers.ErrNotFound):
		return providers.Errorf(providers.ErrNotFound, "cwd %q: no such directory", given)
	case err != nil:
		return err
	case !fi.IsDir:
		return providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", given)
	}
	return nil
}

// kill ends the command's whole process group, best effort, even when ctx
// has ended.
func (p *Provider) kill(ctx context.Context, id, dir string) {
	kctx, cancel := detached(ctx)
	defer cancel()
	if out, code, err := p.execute(kctx, id, shellCommand(killScript, dir), 10*time.Second); err != nil || code != 0 {
		p.log.Debug("daytona: cannot kill command", "sandbox", id, "dir", dir, "exit", code, "output", out, "err", err)
	}
}

// running is a command started in its own session.
type running struct {
	p       *Provider
	id      string
	c       *conn
	session string
	cmdID   string
	ws      *websocket.Conn
}

// startCommand starts the command in a session of its own, and opens its
// log stream. On failure nothing is left behind. The session is the one
// made ahead of time for the sandbox's next command when there is one
// (which saves its round trip), else a new one.
func (p *Provider) startCommand(ctx context.Context, id, dir, command string) (*running, error) {
	body := map[string]any{"command": command, "runAsync": true, "suppressInputEcho": true}
	var started struct {
		CmdID string `json:"cmdId"`
	}
	var r *running
	if c, session := p.spareSession(id); session != "" {
		r = &running{p: p, id: id, c: c, session: session}
		// Not retried: a second attempt could run the command twice.
		err := p.do(ctx, http.MethodPost, c.base+"/process/session/"+session+"/exec", body, &started)
		if err != nil {
			go r.close()
			if !isStatus(err, http.StatusNotFound) && !p.unreachable(err) {
				return nil, p.toolboxErr(ctx, id, "run command in", ".", err)
			}
			// The session is gone (the daemon restarted, the sandbox
			// stopped), so the command did not run: a new session serves.
			r = nil
		}
	}
	if r == nil {
		session := "mcp-sandbox-" + randomTag()
		c, err := p.toolbox(ctx, id, http.MethodPost, "/process/session", map[string]string{"sessionId": session}, nil)
		if err != nil {
			return nil, p.toolboxErr(ctx, id, "run command in", ".", err)
		}
		r = &running{p: p, id: id, c: c, session: session}
		err = p.do(ctx, http.MethodPost, c.base+"/process/session/"+session+"/exec", body, &started)
		if err != nil {
			r.close()
			return nil, p.toolboxErr(ctx, id, "run command in", ".", err)
		}
	}
	go p.prepareSession(r.c) // for the next command
	if started.CmdID == "" {
		p.kill(ctx, id, dir)
		r.close()
		return nil, p.toolboxErr(ctx, id, "run command in", ".", errors.New("the daemon returned no command ID"))
	}
	r.cmdID = started.CmdID
	u := "ws" + strings.TrimPrefix(r.c.base, "http") + "/process/session/" + r.session + "/command/" + r.cmdID + "/logs?follow=true"
	h := http.Header{}
	h.Set("Authorization", "Bearer "+p.o.APIKey)
	h.Set("User-Agent", "mcp-sandbox")
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	ws, resp, err := d.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		p.kill(ctx, id, dir)
		r.close()
		return nil, p.toolboxErr(ctx, id, "follow the output of a command in", ".", err)
	}
	r.ws = ws
	return r, nil
}

// follow copies the log stream into out until the daemon closes it.
func (r *running) follow(out *demux) error {
	buf := make([]byte, 32<<10)
	for {
		_, msg, err := r.ws.NextReader()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				return nil
			}
			return err
		}
		for {
			n, rerr := msg.Read(buf)
			if n > 0 {
				if werr := out.write(buf[:n]); werr != nil {
					return werr
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return rerr
			}
		}
	}
}

// feed sends stdin as base64 lines (each read its own, padded: GNU base64
// -d decodes concatenated ones), then the "." end line.
func (r *running) feed(ctx context.Context, in io.Reader) {
	buf := make([]byte, stdinChunk)
	send := func(line string) bool {
		data := line + "\n"
		if len(data) < decodeBlock {
			data += strings.Repeat("\n", decodeBlock-len(data))
		}
		err := r.p.do(ctx, http.MethodPost, r.c.base+"/process/session/"+r.session+"/command/"+r.cmdID+"/input",
			map[string]string{"data": data}, nil)
		if err != nil {
			r.p.log.Debug("daytona: stdin not fully delivered", "sandbox", r.id, "err", err)
		}
		return err == nil
	}
	for {
		n, err := in.Read(buf)
		if n > 0 && !send(base64.StdEncoding.EncodeToString(buf[:n])) {
			return
		}
		if err != nil {
			send(".")
			return
		}
	}
}

// exitCode reads the command's exit code; the daemon records it once the
// output is in the log, which may be a moment after the stream ends.
func (r *running) exitCode(ctx context.Context) (int, error) {
	for i := 0; ; i++ {
		var cmd struct {
			ExitCode *int `json:"exitCode"`
		}
		if _, err := r.p.idempotent(ctx, http.MethodGet, r.c.base+"/process/session/"+r.session+"/command/"+r.cmdID, nil, &cmd); err != nil {
			return -1, err
		}
		if cmd.ExitCode != nil {
			return *cmd.ExitCode, nil
		}
		if i == 40 {
			return -1, providers.Errorf(providers.ErrUnavailable, "the command in sandbox %s ended its output but the daemon recorded no exit code", r.id)
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// close deletes the session (which ends the wrapper if it still runs),
// even when the caller has given up.
func (r *running) close() {
	if r.ws != nil {
		r.ws.Close()
	}
	ctx, cancel := detached(context.Background())
	defer cancel()
	if err := r.p.do(ctx, http.MethodDelete, r.c.base+"/process/session/"+r.session, nil, nil); err != nil && !isStatus(err, http.StatusNotFound) {
		r.p.log.Debug("daytona: cannot delete a command session", "sandbox", r.id, "session", r.session, "err", err)
	}
}

// spareSession takes the session made ahead of time for the sandbox's next
// command, if there is one.
func (p *Provider) spareSession(id string) (*conn, string) {
	c := p.cached(id)
	if c == nil {
		return nil, ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	session := c.spare
	c.spare = ""
	return c, session
}

// prepareSession makes a session for the sandbox's next command, unless
// one is ready or on its way: a command then costs one round trip fewer.
// Each session still serves a single command, so no shell state passes
// from one command to the next.
func (p *Provider) prepareSession(c *conn) {
	c.mu.Lock()
	if c.spare != "" || c.preparing {
		c.mu.Unlock()
		return
	}
	c.preparing = true
	c.mu.Unlock()
	ctx, cancel := detached(context.Background())
	defer cancel()
	session := "mcp-sandbox-" + randomTag()
	err := p.do(ctx, http.MethodPost, c.base+"/process/session", map[string]string{"sessionId": session}, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.preparing = false
	if err == nil {
		c.spare = session
	}
}
