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

// execMarker is set in every command's environment to its exec ID, so
// that a timed-out or cancelled command can be found and killed with
// everything it started, which inherits the variable: the router has no
// kill call.
const execMarker = "MCP_SANDBOX_EXEC"

// killMarked stops, then kills, every process whose environment carries
// the marker: stopping first, so none can fork past the sweep.
const killMarked = `m="$1"
for sig in STOP KILL; do
  for f in $(grep -lzx "$m" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}; p=${p%/environ}
    [ "$p" = "$$" ] || kill -"$sig" "$p" 2>/dev/null
  done
done
exit 0`

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

	// runCtx also ends the stdin copier when the command is done with it
	// unread (a caller's pipe may never reach EOF).
	var runCtx context.Context
	var cancel context.CancelFunc
	if req.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, req.Timeout)
	} else {
		runCtx, cancel = context.WithCancel(ctx)
	}
	defer cancel()

	began := time.Now()
	execID := uuid.NewString()
	env := make(map[string]string, len(req.Env)+1)
	for k, v := range req.Env {
		env[k] = v
	}
	env[execMarker] = execID
	// Modal's own exec timeout is the backstop should this process die
	// before it can kill the command.
	if err := p.start(runCtx, c, execID, []string{"/bin/sh", "-c", req.Command}, execOpts{workdir: cwd, env: env, timeout: req.Timeout}); err != nil {
		if runCtx.Err() != nil && ctx.Err() == nil {
			p.killCommand(ctx, c, execID)
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
		p.killCommand(ctx, c, execID)
		return providers.ExecResult{}, ctx.Err()
	case runCtx.Err() != nil:
		p.killCommand(ctx, c, execID)
		res.ExitCode, res.TimedOut = -1, true
		return res, nil
	case err != nil:
		p.killCommand(ctx, c, execID)
		return res, err
	}
	return res, nil
}

// killCommand kills a command that is being given up on, with everything it
// started, even when ctx has ended.
func (p *Provider) killCommand(ctx context.Context, c *sandboxConn, execID string) {
	kctx, cancel := detached(ctx)
	defer cancel()
	if _, errOut, code, err := p.runHelper(kctx, c, []string{"/bin/sh", "-c", killMarked, "mcp-sandbox-kill", execMarker + "=" + execID}, nil, false); err != nil || code != 0 {
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
