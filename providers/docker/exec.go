package docker

import (
	"bytes"
	"context"
	"io"
	"maps"
	"os"
	"path"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// execMarker tags every process a command starts (children inherit it), so
// a timeout or cancellation can find and kill all of them, background ones
// included, without the image needing setsid or a process-group tool.
const execMarker = "MCP_SANDBOX_EXEC"

// killScript kills every process whose environment carries the marker given
// as $1. It repeats a few times in case one forked while it scanned, and
// fails if some survive. It needs only sh, grep -z, cut and kill (busybox
// and GNU have them).
const killScript = `t="` + execMarker + `=$1"
for i in 1 2 3 4 5; do
  pids=$(grep -lzxF "$t" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3) || exit 3
  [ -z "$pids" ] && exit 0
  kill -9 $pids 2>/dev/null
done
exit 1`

// relayScript runs the command ($1) with its output going through two
// relays the script owns, instead of straight into the exec's streams. A
// background child (`server &`) then holds only a relay's pipe; once the
// command's shell exits the relays are stopped and the exec ends at once.
// Left holding the exec's own streams, the child would make the engine
// wait 2s before closing them, and stall every other command's exit in the
// container meanwhile. Images without mkfifo or a writable /tmp run the
// command directly.
const relayScript = `d=/tmp/.mcp-sandbox-exec.$$
if ! mkfifo -m 600 "$d.o" "$d.e" 2>/dev/null; then rm -f "$d.o" "$d.e"; exec /bin/sh -c "$1"; fi
cat "$d.o" & o=$!
cat "$d.e" >&2 & e=$!
/bin/sh -c "$1" >"$d.o" 2>"$d.e"
rc=$?
rm -f "$d.o" "$d.e"
{ sleep 0.2; kill $o $e; } >/dev/null 2>&1 </dev/null &
k=$!
wait $o $e
kill $k 2>/dev/null
exit $rc`

const (
	// pollAfter is when a still-running command starts being watched for
	// its shell's exit (a finished shell whose background child holds the
	// output open would otherwise look like a running command).
	pollAfter = 100 * time.Millisecond
	pollEvery = 100 * time.Millisecond
	// drainGrace is how long output is still read after the shell exited.
	drainGrace = 200 * time.Millisecond
)

func (p *Provider) Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error) {
	b, err := p.box(ctx, id)
	if err != nil {
		return providers.ExecResult{}, err
	}
	if err := providers.ValidateEnv(req.Env); err != nil {
		return providers.ExecResult{}, err
	}
	dir, err := p.cwd(ctx, id, b.workdir, req.Cwd)
	if err != nil {
		return providers.ExecResult{}, err
	}

	token := randomHex(12)
	// A warm sandbox's env is given here (a cold one's is its
	// container's), under the command's own.
	merged := maps.Clone(b.env)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, req.Env)
	env := append(envList(merged), execMarker+"="+token)
	execOpts := client.ExecCreateOptions{
		Cmd:          []string{"/bin/sh", "-c", relayScript, "mcp-sandbox-exec", req.Command},
		Env:          env,
		WorkingDir:   dir,
		AttachStdin:  req.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
	}
	created, err := p.cli.ExecCreate(ctx, id, execOpts)
	if cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "is not running") {
		// The engine restarted (or someone stopped the container): the
		// sandbox's files are intact, so start it again and go on.
		p.log.Info("restarting a stopped sandbox", "sandbox", id[:12])
		if _, serr := p.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); serr == nil {
			created, err = p.cli.ExecCreate(ctx, id, execOpts)
		}
	}
	if err != nil {
		return providers.ExecResult{}, p.apiErr(id, "run command", err)
	}
	start := time.Now()
	att, err := p.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return providers.ExecResult{}, p.apiErr(id, "run command", err)
	}
	defer att.Close()

	if req.Stdin != nil {
		go func() {
			io.Copy(att.Conn, req.Stdin)
			att.CloseWrite() // the command sees end-of-file
		}()
	}
	stdout, stderr := orDiscard(req.Stdout), orDiscard(req.Stderr)
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, att.Reader)
		copied <- err
	}()

	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	poll := time.NewTimer(pollAfter)
	defer poll.Stop()
	var drain <-chan time.Time

	res := providers.ExecResult{ExitCode: -1}
	var stopErr error
wait:
	for {
		select {
		case <-copied:
			break wait
		case <-poll.C:
			// The shell may have exited while a background child (`server &`)
			// keeps the output open: stop reading shortly after it did.
			if ins, err := p.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{}); err == nil && !ins.Running {
				drain = time.After(drainGrace)
			} else {
				poll.Reset(pollEvery)
			}
		case <-drain:
			att.Close()
			<-copied
			break wait
		case <-timeout:
			res.TimedOut = true
			p.kill(id, created.ID, token)
			att.Close()
			<-copied
			break wait
		case <-ctx.Done():
			stopErr = ctx.Err()
			p.kill(id, created.ID, token)
			att.Close()
			<-copied
			break wait
		}
	}
	res.Duration = time.Since(start)
	if stopErr != nil {
		return res, stopErr
	}
	code, err := p.exitCode(ctx, created.ID)
	if err != nil && !res.TimedOut {
		return res, p.apiErr(id, "run command", err)
	}
	if err == nil {
		res.ExitCode = code
	}
	return res, nil
}

// exitCode waits (briefly) for the engine to record the exec's exit.
func (p *Provider) exitCode(ctx context.Context, execID string) (int, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		ins, err := p.cli.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		if err != nil {
			return -1, err
		}
		if !ins.Running {
			return ins.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return -1, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill ends every process the command with this token started. It runs on
// its own context: the caller's may be the one that was cancelled. When the
// processes cannot be killed one by one (the command took every process
// slot, so not even the kill script can start) or the command outlives the
// attempt, the container is restarted: that ends every process in it and
// keeps its files.
func (p *Provider) kill(id, execID, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, errOut, err := p.run(ctx, id, nil, nil, "/bin/sh", "-c", killScript, "kill", token)
	if err == nil && code == 0 && p.ended(ctx, execID, 2*time.Second) {
		return
	}
	p.log.Warn("a stopped command's processes survived; restarting the sandbox to end them",
		"sandbox", id[:12], "exit", code, "stderr", strings.TrimSpace(errOut), "err", err)
	now := 0
	if _, err := p.cli.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: &now}); err != nil {
		p.log.Error("cannot restart the sandbox", "sandbox", id[:12], "err", err)
	}
}

// ended waits up to d for the exec to be reported finished.
func (p *Provider) ended(ctx context.Context, execID string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		ins, err := p.cli.ExecInspect(ctx, execID, client.ExecInspectOptions{})
		if err == nil && !ins.Running {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run executes argv in the container (no shell, no marker) for the
// driver's own housekeeping: stdin (nil for none) is its input, its stdout
// goes to stdout (nil discards); it returns the exit code and stderr.
func (p *Provider) run(ctx context.Context, id string, stdin io.Reader, stdout io.Writer, argv ...string) (int, string, error) {
	var errOut bytes.Buffer
	code, err := p.runIO(ctx, id, stdin, stdout, &limitedWriter{w: &errOut, n: 4 << 10}, argv...)
	if err != nil {
		return -1, "", err
	}
	return code, errOut.String(), nil
}

// runStreams is run for a script whose stderr carries data, not errors.
func (p *Provider) runStreams(ctx context.Context, id string, stdout, stderr io.Writer, argv ...string) (int, error) {
	return p.runIO(ctx, id, nil, stdout, stderr, argv...)
}

func (p *Provider) runIO(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.Writer, argv ...string) (int, error) {
	created, err := p.cli.ExecCreate(ctx, id, client.ExecCreateOptions{
		Cmd: argv, AttachStdin: stdin != nil, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return -1, err
	}
	att, err := p.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, err
	}
	defer att.Close()
	// The hijacked stream ignores ctx: close it when ctx ends, so a caller
	// that gives up (a process wait) is not held until the script ends.
	defer context.AfterFunc(ctx, func() { att.Close() })()
	if stdin != nil {
		go func() {
			io.Copy(att.Conn, stdin)
			att.CloseWrite()
		}()
	}
	if _, err := stdcopy.StdCopy(orDiscard(stdout), orDiscard(stderr), att.Reader); err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, err
	}
	return p.exitCode(ctx, created.ID)
}

// limitedWriter keeps the first n bytes and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}

// cwd resolves a command's working directory; it must be an existing
// directory, so a typo reads as "not found" rather than a cryptic engine error.
func (p *Provider) cwd(ctx context.Context, id, workdir, cwd string) (string, error) {
	if cwd == "" {
		return workdir, nil
	}
	dir, err := resolve(workdir, cwd)
	if err != nil {
		return "", err
	}
	st, err := p.cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: dir})
	switch {
	case err == nil:
		if !st.Stat.Mode.IsDir() && st.Stat.Mode&os.ModeSymlink == 0 {
			return "", providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", cwd)
		}
		return dir, nil
	case cerrdefs.IsNotFound(err) && !isNoSuchContainer(err):
		return "", providers.Errorf(providers.ErrNotFound, "cwd %q: no such directory", cwd)
	}
	return "", p.apiErr(id, "cwd "+cwd, err)
}

// resolve maps a sandbox path to an absolute container path: relative paths
// start at the workdir. `..` cannot leave the container's own file system;
// at worst it reaches the container's /.
func resolve(workdir, name string) (string, error) {
	if name == "" {
		return "", providers.Errorf(providers.ErrInvalidArgument, "path is empty")
	}
	for _, r := range name {
		if r == 0 {
			return "", providers.Errorf(providers.ErrInvalidArgument, "path %q contains a NUL byte", name)
		}
	}
	if path.IsAbs(name) {
		return path.Clean(name), nil
	}
	return path.Join(workdir, name), nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
