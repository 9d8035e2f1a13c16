package daytona

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// A command runs as an asynchronous command of its own daemon session, and
// its output comes back over the session's log websocket. The daemon labels
// that log line by line (each line behind a stdout or stderr marker, NUL
// bytes lost, a newline added to a last line without one), so the command
// is wrapped: it runs in its own process group (setsid) with its output in
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
const wrapper = `d=$1 cwd=$2 cmd=$3 in=$4; shift 4
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

// killScript kills the process group recorded in $1.pgid, waiting briefly
// for the command to record it.
const killScript = `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
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
	tag := randomTag()
	dir := scratchPrefix + tag
	args := []string{dir, cwd, req.Command, ""}
	if req.Stdin != nil {
		args[3] = "1"
	}
	names := make([]string, 0, len(req.Env))
	for k := range req.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, k+"="+req.Env[k])
	}

	began := time.Now()
	r, err := p.startCommand(ctx, id, "mcp-sandbox-"+tag, dir, shellCommand(wrapper, args...))
	if err != nil {
		return providers.ExecResult{}, err
	}
	defer func() { go r.close() }() // the caller need not wait for the session's deletion

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if req.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, req.Timeout)
	}
	defer cancel()
	if req.Stdin != nil {
		go r.feed(runCtx, req.Stdin)
	}
	out := newDemux(req.Stdout, req.Stderr)
	streamDone := make(chan error, 1)
	go func() { streamDone <- r.follow(out) }()

	res := providers.ExecResult{ExitCode: -1}
	var streamErr error
	select {
	case streamErr = <-streamDone:
	case <-runCtx.Done():
		p.kill(ctx, id, dir)
		// The wrapper notices and ends the streams; wait for what was
		// already printed, but not for long.
		select {
		case <-streamDone:
		case <-time.After(5 * time.Second):
			r.ws.Close()
			<-streamDone
		}
		res.Duration = time.Since(began)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.TimedOut = true
		return res, nil
	}
	res.Duration = time.Since(began)
	if !out.ended() {
		if g := p.gone(ctx, id); g != nil {
			return res, g
		}
		p.kill(ctx, id, dir)
		why := "ended"
		if streamErr != nil {
			why = "broke (" + streamErr.Error() + ")"
		}
		return res, providers.Errorf(providers.ErrUnavailable,
			"the output stream of the command in sandbox %s %s before the command ended; the command was killed, run it again (if this repeats, the sandbox's image may lack GNU tail, sed, stdbuf, setsid or base64)", id, why)
	}
	if code, ok := out.exitCode(); ok {
		res.ExitCode = code
		return res, nil
	}
	code, err := r.exitCode(ctx) // the daemon's record, when the mark lacks it
	if err != nil {
		return res, p.toolboxErr(ctx, id, "run command in", cwd, err)
	}
	res.ExitCode = code
	return res, nil
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

// startCommand makes a session, starts the command in it and opens its
// log stream. On failure nothing is left behind.
func (p *Provider) startCommand(ctx context.Context, id, session, dir, command string) (*running, error) {
	c, err := p.toolbox(ctx, id, http.MethodPost, "/process/session", map[string]string{"sessionId": session}, nil)
	if err != nil {
		return nil, p.toolboxErr(ctx, id, "run command in", ".", err)
	}
	r := &running{p: p, id: id, c: c, session: session}
	var started struct {
		CmdID string `json:"cmdId"`
	}
	// Not retried: a second attempt could run the command twice.
	err = p.do(ctx, http.MethodPost, c.base+"/process/session/"+session+"/exec",
		map[string]any{"command": command, "runAsync": true, "suppressInputEcho": true}, &started)
	if err == nil && started.CmdID == "" {
		err = errors.New("the daemon returned no command ID")
	}
	if err != nil {
		r.close()
		return nil, p.toolboxErr(ctx, id, "run command in", ".", err)
	}
	r.cmdID = started.CmdID
	u := "ws" + strings.TrimPrefix(c.base, "http") + "/process/session/" + session + "/command/" + r.cmdID + "/logs?follow=true"
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
