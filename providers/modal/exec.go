package modal

import (
	"context"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// pidDir holds, per running command, the PID of its shell, so that a
// timed-out or cancelled command can be killed with everything it started:
// the router has no kill call.
const pidDir = "/tmp/.mcp-sandbox-exec"

// wrapper records its PID, runs the user's command as its child and
// removes the record when the command ends, passing on its status.
const wrapper = `mkdir -p ` + pidDir + ` 2>/dev/null && echo $$ >"$1" 2>/dev/null; /bin/sh -c "$2"; r=$?; rm -f "$1"; exit $r`

// killTree stops, then kills, a process and all its descendants (children
// first found through /proc, then its process group).
const killTree = `f=$1; p=$(cat "$f" 2>/dev/null) || exit 0; rm -f "$f"
k() { kill -STOP "$1" 2>/dev/null; for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do k "$c"; done; kill -KILL "$1" 2>/dev/null; }
k "$p"; kill -KILL -"$p" 2>/dev/null; exit 0`

func (p *Provider) resolve(c *sandboxConn, name string) string {
	if path.IsAbs(name) {
		return path.Clean(name)
	}
	return path.Join(c.workdir, name)
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
		cwd = p.resolve(c, req.Cwd)
		fi, err := p.stat(ctx, c, cwd, req.Cwd)
		switch {
		case err != nil:
			return providers.ExecResult{}, relabel(err, "cwd")
		case fi.Type != providers.TypeDir && fi.Type != providers.TypeSymlink:
			return providers.ExecResult{}, providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", req.Cwd)
		}
	}

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if req.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, req.Timeout)
	}
	defer cancel()

	began := time.Now()
	execID := uuid.NewString()
	pidFile := pidDir + "/" + execID
	args := []string{"/bin/sh", "-c", wrapper, "mcp-sandbox-exec", pidFile, req.Command}
	// Modal's own exec timeout is the backstop should this process die
	// before it can kill the command.
	if err := p.start(runCtx, c, execID, args, execOpts{workdir: cwd, env: req.Env, timeout: req.Timeout}); err != nil {
		if runCtx.Err() != nil && ctx.Err() == nil {
			p.killCommand(ctx, c, pidFile)
			return providers.ExecResult{ExitCode: -1, TimedOut: true, Duration: time.Since(began)}, nil
		}
		return providers.ExecResult{}, p.routerErr(ctx, c, "run command", err)
	}

	// stdin, stdout and stderr move at the same time as the wait.
	var wg sync.WaitGroup
	if req.Stdin != nil {
		go func() {
			if err := p.feedStdin(runCtx, c, execID, req.Stdin); err != nil && runCtx.Err() == nil {
				p.log.Debug("modal: stdin not fully delivered", "sandbox", c.id, "err", err)
			}
		}()
	} else {
		go p.closeStdin(runCtx, c, execID)
	}
	outErrs := make(chan error, 2)
	for _, s := range []struct {
		fd pb.TaskExecStdioFileDescriptor
		w  interface{ Write([]byte) (int, error) }
	}{
		{pb.TaskExecStdioFileDescriptor_TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT, req.Stdout},
		{pb.TaskExecStdioFileDescriptor_TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR, req.Stderr},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w interface{ Write([]byte) (int, error) }
			if s.w != nil {
				w = s.w
			}
			outErrs <- p.readOutput(runCtx, c, execID, s.fd, w)
		}()
	}
	code, err := p.wait(runCtx, c, execID)
	if err == nil {
		wg.Wait() // the streams end once drained after the exit
		close(outErrs)
		for oerr := range outErrs {
			if oerr != nil && err == nil {
				err = oerr
			}
		}
	}
	res := providers.ExecResult{ExitCode: code, Duration: time.Since(began)}
	switch {
	case ctx.Err() != nil:
		p.killCommand(ctx, c, pidFile)
		return providers.ExecResult{}, ctx.Err()
	case runCtx.Err() != nil:
		p.killCommand(ctx, c, pidFile)
		res.ExitCode, res.TimedOut = -1, true
		return res, nil
	case err != nil:
		p.killCommand(ctx, c, pidFile)
		return res, err
	}
	return res, nil
}

// killCommand kills a command that is being given up on, with everything it
// started, even when ctx has ended.
func (p *Provider) killCommand(ctx context.Context, c *sandboxConn, pidFile string) {
	kctx, cancel := detached(ctx)
	defer cancel()
	if _, errOut, code, err := p.runHelper(kctx, c, []string{"/bin/sh", "-c", killTree, "mcp-sandbox-kill", pidFile}, nil, false); err != nil || code != 0 {
		p.log.Debug("modal: cannot kill a command", "sandbox", c.id, "err", err, "exit", code, "stderr", string(errOut))
	}
}

// relabel renames the subject of a file error ("stat" -> "cwd").
func relabel(err error, subject string) error {
	var pe *providers.Error
	if e, ok := err.(*providers.Error); ok {
		pe = e
		return &providers.Error{Kind: pe.Kind, Msg: subject + strings.TrimPrefix(pe.Msg, "stat"), Err: pe.Err}
	}
	return err
}
