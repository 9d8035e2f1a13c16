package runloop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Runloop's executions carry output as JSON strings, which cannot hold
// arbitrary bytes, and take stdin as text. So that both stay byte-exact,
// the command runs inside wrapScript: its stdout and stderr go through two
// relays that print base64 lines as output arrives (one read of up to
// 64 KiB at a time, so output streams rather than waits for a block to
// fill), and stdin arrives as base64 lines, decoded one line at a time.
// Lines starting with "!" on stdout are the script's own reports.
//
// Every process counts on a loaded devbox, so a chunk costs a dd and a
// base64, and end-of-file a dd alone: dd puts the chunk in a file and the
// relay reads dd's record count with the shell's own read, rather than a
// subshell capturing the output to test it.
//
// The relays read named pipes the script owns, so a background child
// (`server &`) holds only those: once the command's shell exits, the relays
// get a second to finish and are stopped (with SIGKILL: they ignore
// SIGTERM), and the call returns.
//
// A timeout is kept in the devbox: when it runs out, the script sends
// SIGTERM to the process group, which the relays ignore, so they deliver
// what the command wrote before they see end-of-file, and the script then
// reports "!timeout" (the timer leaves a file saying so: a command that
// signals its own group has not timed out). (Exec kills the group outright if that does not end
// the command.) It needs sh, mkfifo, dd, base64 and, for a timeout, sleep
// (coreutils or busybox).
const wrapScript = `mcp_cmd=$CMD mcp_to=$TO; unset CMD TO
if [ -n "$1" ]; then cd -- "$1" 2>/dev/null || { if [ -e "$1" ]; then echo '!notdir'; else echo '!nodir'; fi; exit 1; }; fi
d=${TMPDIR:-/tmp}/.mcp-sandbox-exec.$$.KEY
mkfifo -m 600 "$d.o" "$d.e" 2>/dev/null || { echo '!nofifo'; exit 1; }
enc() {
  trap '' TERM
  while LC_ALL=C dd bs=65536 count=1 of="$1.c" 2>"$1"; do
    read -r n <"$1"
    case $n in 0+1*|1+0*) ;; *) break;; esac
    base64 <"$1.c"
  done
}
(exec <"$d.o" 2>/dev/null; enc "$d.so") & o=$!
(exec <"$d.e" >&2 2>/dev/null; enc "$d.se") & e=$!
exec 3<&0 2>/dev/null
shift
trap : TERM
echo '!run'
{ RUN; } <&3 3<&- &
c=$!
t=
if [ -n "$mcp_to" ]; then
  (trap 'kill $s; exit' TERM; sleep "$mcp_to" & s=$!; wait $s && : >"$d.t" && kill -TERM 0) >/dev/null 2>&1 </dev/null &
  t=$!
fi
while :; do wait $c; rc=$?; kill -0 $c 2>/dev/null || break; done
[ -z "$t" ] || kill $t 2>/dev/null
exec 3<&-
if [ -n "$o$e" ]; then
  { sleep 1; kill -KILL $o $e; } >/dev/null 2>&1 </dev/null &
  k=$!
  wait $o $e
  kill $k 2>/dev/null
fi
[ ! -e "$d.t" ] || echo '!timeout'
rm -f "$d.o" "$d.e" "$d.so" "$d.se" "$d.so.c" "$d.se.c" "$d.t"
echo "!exit $rc"
exit $rc`

const (
	runNoStdin = `ENV /bin/sh -c "$mcp_cmd" >"$d.o" 2>"$d.e" </dev/null`
	runStdin   = `while IFS= read -r l; do printf '%s\n' "$l" | base64 -d 2>/dev/null || exit 1; done | ENV /bin/sh -c "$mcp_cmd" >"$d.o" 2>"$d.e"`
)

// timeoutGrace is how long Exec waits, past a command's timeout, for the
// devbox to end it and deliver its output before killing the group itself.
const timeoutGrace = 3 * time.Second

// stdinChunk is how much stdin one send_std_in call carries (as base64).
const stdinChunk = 48 << 10

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// wrap builds the command line the devbox's shell runs.
func wrap(req providers.ExecRequest) string {
	run := runNoStdin
	if req.Stdin != nil {
		run = runStdin
	}
	if len(req.Env) > 0 {
		run = strings.Replace(run, "ENV", `env "$@"`, 1)
	} else {
		run = strings.Replace(run, "ENV ", "", 1)
	}
	// A stream nobody reads needs no relay.
	if req.Stdout == nil {
		run = strings.Replace(run, `>"$d.o"`, `>/dev/null`, 1)
	}
	if req.Stderr == nil {
		run = strings.Replace(run, `2>"$d.e"`, `2>/dev/null`, 1)
	}
	script := strings.Replace(wrapScript, "RUN", run, 1)
	// A wrapper killed outright leaves its files behind: a key keeps a
	// later one with the same PID from tripping over them.
	script = strings.Replace(script, "KEY", newKey()[24:], 1)
	if req.Stdout == nil {
		script = strings.Replace(script, "(exec <\"$d.o\" 2>/dev/null; enc \"$d.so\") & o=$!", "o=", 1)
	}
	if req.Stderr == nil {
		script = strings.Replace(script, "(exec <\"$d.e\" >&2 2>/dev/null; enc \"$d.se\") & e=$!", "e=", 1)
	}
	var b strings.Builder
	b.WriteString("CMD=" + shellQuote(req.Command))
	if req.Timeout > 0 {
		ms := max(req.Timeout.Milliseconds(), 1)
		b.WriteString(fmt.Sprintf(" TO=%d.%03d", ms/1000, ms%1000))
	}
	// exec: the wrapper's SIGTERM for a timeout reaches no shell above it.
	b.WriteString(" exec sh -c " + shellQuote(script) + " mcp-sandbox " + shellQuote(req.Cwd))
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(" " + shellQuote(k+"="+req.Env[k]))
	}
	return b.String()
}

// execView is Runloop's DevboxAsyncExecutionDetailView.
type execView struct {
	ExecutionID string `json:"execution_id"`
	Status      string `json:"status"`
	ExitStatus  *int   `json:"exit_status"`
	Stdout      string `json:"stdout"`
	Stderr      string `json:"stderr"`
}

func (v execView) exit() int {
	if v.ExitStatus == nil {
		return -1
	}
	return *v.ExitStatus
}

func (p *Provider) Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error) {
	if err := providers.ValidateEnv(req.Env); err != nil {
		return providers.ExecResult{}, err
	}
	if err := checkID(id); err != nil {
		return providers.ExecResult{}, err
	}
	if strings.ContainsRune(req.Command, 0) || strings.ContainsRune(req.Cwd, 0) {
		return providers.ExecResult{}, providers.Errorf(providers.ErrInvalidArgument, "the command or cwd contains a NUL byte")
	}
	if name, _, ok := supervisor.HelperFile(helperMachine); ok {
		in, err := p.info(ctx, id)
		if err != nil {
			return providers.ExecResult{}, err
		}
		for attempt := 0; ; attempt++ {
			state, uploaded := p.helperState(in)
			if state != helperReady {
				break
			}
			pid := path.Join(in.tmp, ".mcp-sandbox-exec."+newKey()[24:]+".pid")
			res, ran, err := p.run(ctx, id, req, in.helperCommand(name, pid, req), pid)
			if ran || err != nil {
				return res, err
			}
			// The helper did not start, so neither did the command: put
			// it (back) in place once, else the wrapper serves.
			if uploaded || attempt > 0 {
				p.log.Info("runloop: commands run through the shell wrapper: the helper did not start", "devbox", id)
				p.setHelper(in, helperUnusable, false)
				break
			}
			p.installHelper(ctx, id, in)
		}
	}
	res, _, err := p.run(ctx, id, req, wrap(req), "")
	return res, err
}

// run runs command (the helper's, which records its pid in the file pid,
// or the wrapper's when pid is "") and follows its output; ran is false
// when the helper never started, so the command did not run.
func (p *Provider) run(ctx context.Context, id string, req providers.ExecRequest, command, pid string) (res providers.ExecResult, ran bool, err error) {
	began := time.Now()
	var ex execView
	body := map[string]any{"command": command, "attach_stdin": req.Stdin != nil}
	if err := p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + id + "/execute_async", json: body}, &ex); err != nil {
		return providers.ExecResult{}, true, p.execErr(ctx, id, err)
	}
	defer p.keepAliveWhile(id)()
	r := &run{p: p, devbox: id, exec: ex.ExecutionID, pid: pid, started: make(chan struct{})}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var streams sync.WaitGroup
	var outErr, errErr error
	streams.Go(func() { outErr = r.follow(runCtx, "stdout", req.Stdout) })
	streams.Go(func() { errErr = r.follow(runCtx, "stderr", req.Stderr) })
	if req.Stdin != nil {
		go r.feed(runCtx, req.Stdin)
	}
	ended := make(chan struct{})
	go func() { streams.Wait(); close(ended) }()

	// The timeout counts from the command's start, which the wrapper
	// reports: the round trips and the devbox's own start-up are not the
	// command's time. The wrapper ends the command itself; this timer is
	// for a command that outlives its SIGTERM.
	var timeout <-chan time.Time
	started := r.started
	res = providers.ExecResult{ExitCode: -1}
wait:
	for {
		select {
		case <-ended:
			break wait
		case <-started:
			started = nil
			if req.Timeout > 0 {
				t := time.NewTimer(req.Timeout + timeoutGrace)
				defer t.Stop()
				timeout = t.C
			}
		case <-timeout:
			r.kill(ctx)
			res.TimedOut = true
			break wait
		case <-ctx.Done():
			r.kill(ctx)
			break wait
		}
	}
	// Output already produced is delivered, but nothing is written once
	// Exec returns.
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		cancel()
		<-ended
	}
	res.Duration = time.Since(began)
	select {
	case <-r.started:
	default:
		// stdout ended, cleanly, before the helper's first line.
		if pid != "" && outErr == nil && ctx.Err() == nil && !res.TimedOut {
			return res, false, nil
		}
	}
	switch {
	case ctx.Err() != nil:
		return res, true, ctx.Err()
	case res.TimedOut:
		return res, true, nil
	case r.timedOut:
		// Ended by the wrapper, its output all delivered.
		res.TimedOut = true
		if r.exit != nil {
			res.ExitCode = *r.exit
		}
		return res, true, nil
	}
	if err := errors.Join(outErr, errErr); err != nil {
		r.kill(ctx)
		return res, true, p.streamErr(ctx, id, err)
	}
	switch r.report {
	case "":
	case "nodir":
		return res, true, providers.Errorf(providers.ErrNotFound, "cwd %q: no such directory", req.Cwd)
	case "notdir":
		return res, true, providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", req.Cwd)
	case "nofifo":
		return res, true, providers.Errorf(providers.ErrUnavailable, "devbox %s cannot run commands: mkfifo failed in $TMPDIR (or /tmp)", id)
	}
	if r.exit != nil {
		res.ExitCode = *r.exit
		return res, true, nil
	}
	// No exit report: the relays were stopped or the stream cut. The API
	// knows how the command ended.
	if err := p.longPoll(ctx, r.path()+"/wait_for_status", []string{"completed"}, &ex); err != nil {
		return res, true, p.execErr(ctx, id, err)
	}
	res.ExitCode = ex.exit()
	return res, true, nil
}

// run is one command's execution.
type run struct {
	p      *Provider
	devbox string
	exec   string
	pid    string // the helper's pid file; "" under the wrapper
	// Set by the stdout follower: started is closed when the command
	// starts; report and exit are set before it returns.
	started  chan struct{}
	report   string
	timedOut bool
	exit     *int
}

func (r *run) path() string { return "/v1/devboxes/" + r.devbox + "/executions/" + r.exec }

// kill ends the command and everything it started, even when ctx ended.
func (r *run) kill(ctx context.Context) {
	if r.pid != "" {
		// The helper kills what the command started however it detached;
		// killing the execution's group would end the helper instead.
		if err := r.p.killHelper(ctx, r.devbox, r.pid); err == nil {
			return
		}
	}
	kctx, cancel := detached(ctx)
	defer cancel()
	err := r.p.call(kctx, &request{method: http.MethodPost, path: r.path() + "/kill", json: map[string]any{"kill_process_group": true}}, nil)
	if err != nil {
		r.p.log.Warn("runloop: cannot kill a command", "devbox", r.devbox, "execution", r.exec, "err", err)
	}
}

// feed sends stdin as base64 lines, then end-of-file.
func (r *run) feed(ctx context.Context, in io.Reader) {
	buf := make([]byte, stdinChunk)
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			text := base64.StdEncoding.EncodeToString(buf[:n]) + "\n"
			if err := r.p.call(ctx, &request{method: http.MethodPost, path: r.path() + "/send_std_in", json: map[string]any{"text": text}}, nil); err != nil {
				r.p.log.Debug("runloop: stdin not fully delivered", "devbox", r.devbox, "err", err)
				return
			}
		}
		if rerr != nil {
			if rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
				r.p.log.Debug("runloop: reading stdin", "err", rerr)
			}
			break
		}
	}
	r.p.call(ctx, &request{method: http.MethodPost, path: r.path() + "/send_std_in", json: map[string]any{"signal": "EOF"}}, nil)
}

// maxReconnects bounds how often one stream is resumed after a cut.
const maxReconnects = 5

// follow reads one output stream to its end, decoding the relay's base64
// lines into w. A cut stream is resumed from the last offset received.
func (r *run) follow(ctx context.Context, stream string, w io.Writer) error {
	d := &decoder{w: w, stdout: stream == "stdout", run: r}
	var offset int64
	for attempt := 0; ; attempt++ {
		err := r.stream(ctx, stream, &offset, d)
		if err == nil {
			if err = d.flush(); err == nil {
				return nil
			}
			// Ended mid-line: the stream was cut, though cleanly.
		}
		if ctx.Err() != nil || attempt >= maxReconnects || errors.Is(err, errWriter) || errors.Is(err, errRelay) {
			return err
		}
		r.p.log.Debug("runloop: resuming an output stream", "stream", stream, "offset", offset, "err", err)
		if !sleep(ctx, r.p.o.RetryBase<<min(attempt, 4)) {
			return err
		}
	}
}

var (
	errWriter = errors.New("the output writer failed")
	errRelay  = errors.New("the command's output relay sent a line that is not base64")
)

type chunk struct {
	Output string `json:"output"`
	Offset *int64 `json:"offset"`
}

// stream reads server-sent events from *offset until the server ends the
// stream (nil) or it breaks (an error).
func (r *run) stream(ctx context.Context, stream string, offset *int64, d *decoder) error {
	return r.p.events(ctx, r.path()+"/stream_"+stream+"_updates", offset, d.write)
}

// events reads an execution's output stream (path, without its query) as
// server-sent events from *offset, handing each new piece of text to fn,
// until the server ends the stream (nil), it breaks or fn fails (an
// error). *offset counts what fn was given; what a resumed stream sends
// again is skipped.
func (p *Provider) events(ctx context.Context, path string, offset *int64, fn func(string) error) error {
	resp, cancel, err := p.open(ctx, &request{method: http.MethodGet, path: path + "?offset=" + strconv.FormatInt(*offset, 10), accept: "text/event-stream", stream: true})
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	event := ""
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("event:")):
			event = strings.TrimSpace(string(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			data := bytes.TrimSpace(line[len("data:"):])
			if event == "error" {
				return fmt.Errorf("the output stream reported an error: %s", data)
			}
			var c chunk
			if err := json.Unmarshal(data, &c); err != nil {
				return fmt.Errorf("unreadable output event %.100q: %w", data, err)
			}
			text := c.Output
			if c.Offset != nil { // skip what a resumed stream sends again
				switch skip := *offset - *c.Offset; {
				case skip < 0:
					return fmt.Errorf("the output stream skipped bytes %d to %d", *offset, *c.Offset)
				case skip >= int64(len(text)):
					continue
				default:
					text = text[skip:]
				}
			}
			*offset += int64(len(text))
			if err := fn(text); err != nil {
				return err
			}
		case len(line) == 0:
			event = ""
		}
	}
	return sc.Err()
}

// decoder turns the relay's lines back into bytes.
type decoder struct {
	w       io.Writer
	stdout  bool
	run     *run
	pending []byte
	out     []byte
}

func (d *decoder) write(text string) error {
	d.pending = append(d.pending, text...)
	d.out = d.out[:0]
	for {
		i := bytes.IndexByte(d.pending, '\n')
		if i < 0 {
			break
		}
		if err := d.line(d.pending[:i]); err != nil {
			return err
		}
		d.pending = d.pending[i+1:]
	}
	d.pending = append(d.pending[:0:0], d.pending...) // do not pin the event's memory
	if len(d.out) > 0 && d.w != nil {
		if _, err := d.w.Write(d.out); err != nil {
			return fmt.Errorf("%w: %v", errWriter, err)
		}
	}
	return nil
}

func (d *decoder) line(l []byte) error {
	if len(l) == 0 {
		return nil
	}
	if l[0] == '!' && d.stdout {
		report := string(l[1:])
		if report == "run" {
			select {
			case <-d.run.started:
			default:
				close(d.run.started)
			}
			return nil
		}
		if report == "timeout" {
			d.run.timedOut = true
			return nil
		}
		if code, ok := strings.CutPrefix(report, "exit "); ok {
			if n, err := strconv.Atoi(code); err == nil {
				d.run.exit = &n
			}
			return nil
		}
		d.run.report = report
		return nil
	}
	n := len(d.out)
	d.out = append(d.out, make([]byte, base64.StdEncoding.DecodedLen(len(l)))...)
	m, err := base64.StdEncoding.Decode(d.out[n:], l)
	if err != nil {
		return fmt.Errorf("%w (%.60q): %v", errRelay, l, err)
	}
	d.out = d.out[:n+m]
	return nil
}

func (d *decoder) flush() error {
	if len(d.pending) > 0 {
		return fmt.Errorf("the output stream ended in the middle of a line (%d bytes)", len(d.pending))
	}
	return nil
}

// streamErr explains a command whose output could not be followed.
func (p *Provider) streamErr(ctx context.Context, id string, err error) error {
	if _, gerr := p.devbox(ctx, id); gerr != nil {
		return gerr
	}
	if errors.Is(err, errWriter) {
		return providers.Errorf(providers.ErrUnavailable, "the command in devbox %s was killed: %v", id, err)
	}
	return providers.Errorf(providers.ErrUnavailable, "the output stream of the command in devbox %s broke and could not be resumed (%v); the command was killed, run it again", id, err)
}
