package e2b

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	fspb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/process"
)

// stdinChunk is how much stdin one SendInput call carries.
const stdinChunk = 256 << 10

func (p *Provider) Exec(ctx context.Context, id string, req providers.ExecRequest) (providers.ExecResult, error) {
	if err := validateEnv(req.Env); err != nil {
		return providers.ExecResult{}, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.ExecResult{}, err
	}
	// Always name the cwd: envd's default is the template's WORKDIR, which
	// may differ from the home directory relative file paths resolve to.
	cwd := c.workdir
	if req.Cwd != "" {
		cwd = c.resolve(req.Cwd)
	}
	cfg := &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", req.Command}, Envs: req.Env, Cwd: &cwd}
	withStdin := req.Stdin != nil
	start := &pb.StartRequest{Process: cfg, Stdin: &withStdin}

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if req.Timeout > 0 {
		// The deadline travels as Connect-Timeout-Ms: envd kills the
		// command when it passes.
		runCtx, cancel = context.WithTimeout(ctx, req.Timeout)
	}
	defer cancel()
	defer p.keepAliveWhile(ctx, c)()

	began := time.Now()
	stream, err := startProcess(runCtx, c, start)
	switch {
	case ctx.Err() != nil:
		return providers.ExecResult{}, ctx.Err()
	case runCtx.Err() != nil:
		return providers.ExecResult{ExitCode: -1, TimedOut: true, Duration: time.Since(began)}, nil
	case err != nil:
		return providers.ExecResult{}, p.startErr(ctx, c, req.Cwd, err)
	}
	defer stream.Close()

	var pid uint32
	var end *pb.ProcessEvent_EndEvent
	stdinDone := make(chan error, 1)
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().GetEvent().(type) {
		case *pb.ProcessEvent_Start:
			pid = ev.Start.GetPid()
			if withStdin {
				go func() { stdinDone <- p.feedStdin(runCtx, c, pid, req.Stdin) }()
			}
		case *pb.ProcessEvent_Data:
			if err := write(req.Stdout, ev.Data.GetStdout()); err != nil {
				return providers.ExecResult{}, p.abort(ctx, c, pid, fmt.Errorf("write stdout: %w", err))
			}
			if err := write(req.Stderr, ev.Data.GetStderr()); err != nil {
				return providers.ExecResult{}, p.abort(ctx, c, pid, fmt.Errorf("write stderr: %w", err))
			}
		case *pb.ProcessEvent_End:
			end = ev.End
		}
	}
	res := providers.ExecResult{Duration: time.Since(began), ExitCode: -1}
	streamErr := stream.Err()
	switch {
	case ctx.Err() != nil:
		return res, p.abort(ctx, c, pid, ctx.Err())
	case runCtx.Err() != nil || connect.CodeOf(streamErr) == connect.CodeDeadlineExceeded:
		p.kill(ctx, c, pid) // envd has done so already; make sure
		res.TimedOut = true
		return res, nil
	case streamErr != nil && pid == 0: // refused before it started
		return res, p.startErr(ctx, c, req.Cwd, streamErr)
	case streamErr != nil:
		if gone := p.gone(ctx, c.id); gone != nil {
			return res, gone
		}
		return res, p.abort(ctx, c, pid, providers.Errorf(providers.ErrUnavailable,
			"the output stream of the command in sandbox %s broke before the command ended (%v); the command (pid %d) was killed, run it again", c.id, streamErr, pid))
	case end == nil:
		return res, p.abort(ctx, c, pid, providers.Errorf(providers.ErrUnavailable,
			"the output stream of the command in sandbox %s ended without an exit status; the command (pid %d) was killed, run it again", c.id, pid))
	}
	if withStdin {
		select {
		case err := <-stdinDone:
			if err != nil && !errors.Is(err, errStdinClosed) {
				p.log.Debug("e2b: stdin not fully delivered", "sandbox", c.id, "err", err)
			}
		default: // the command ended without reading all of it
		}
	}
	res.ExitCode = exitCode(end)
	return res, nil
}

func write(w io.Writer, b []byte) error {
	if w == nil || len(b) == 0 {
		return nil
	}
	_, err := w.Write(b)
	return err
}

// exitCode follows the shell convention for a death by signal (128+n);
// envd reports Go's ProcessState: exit code -1 and "signal: killed".
func exitCode(end *pb.ProcessEvent_EndEvent) int {
	if end.GetExited() || end.GetExitCode() >= 0 {
		return int(end.GetExitCode())
	}
	if name, ok := strings.CutPrefix(end.GetStatus(), "signal: "); ok {
		for sig := syscall.Signal(1); sig < 65; sig++ {
			if sig.String() == name {
				return 128 + int(sig)
			}
		}
	}
	return -1
}

// startErr explains why a command could not start; envd says
// invalid_argument for a missing cwd as well as for one that is a file.
func (p *Provider) startErr(ctx context.Context, c *conn, cwd string, err error) error {
	if cwd != "" && connect.CodeOf(err) == connect.CodeInvalidArgument {
		st, serr := c.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: c.resolve(cwd)}))
		switch {
		case connect.CodeOf(serr) == connect.CodeNotFound:
			return providers.Errorf(providers.ErrNotFound, "cwd %q: no such directory", cwd)
		case serr == nil && st.Msg.GetEntry().GetType() != fspb.FileType_FILE_TYPE_DIRECTORY:
			return providers.Errorf(providers.ErrInvalidArgument, "cwd %q is not a directory", cwd)
		}
	}
	return p.envdErr(ctx, c.id, "run command in", c.workdir, err)
}

var errStdinClosed = errors.New("stdin closed")

// feedStdin copies r to the process in chunks, then closes its stdin.
func (p *Provider) feedStdin(ctx context.Context, c *conn, pid uint32, r io.Reader) error {
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	buf := make([]byte, stdinChunk)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			in := &pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: buf[:n]}}}
			if _, err := c.process.SendInput(ctx, connect.NewRequest(in)); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	_, err := c.process.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: sel}))
	return err
}

// kill sends SIGKILL to the command, best effort, even when ctx has ended.
func (p *Provider) kill(ctx context.Context, c *conn, pid uint32) {
	if pid == 0 {
		return
	}
	kctx, cancel := detached(ctx)
	defer cancel()
	_, err := c.process.SendSignal(kctx, connect.NewRequest(&pb.SendSignalRequest{
		Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}},
		Signal:  pb.Signal_SIGNAL_SIGKILL,
	}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		p.log.Debug("e2b: cannot kill command", "sandbox", c.id, "pid", pid, "err", err)
	}
}

// abort kills the command and returns err: a caller that stops listening
// must not leave it running.
func (p *Provider) abort(ctx context.Context, c *conn, pid uint32, err error) error {
	p.kill(ctx, c, pid)
	return err
}
