package modal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// stdinChunk is how much stdin one stream message carries (the SDK's size).
const stdinChunk = 256 << 10

// sandboxConn is what it takes to run commands in one sandbox: its task and
// its task command router's address and token. It is a cache: it can always
// be rebuilt from the sandbox ID through the control plane.
type sandboxConn struct {
	id, taskID string

	mu      sync.Mutex
	jwt     string
	expires time.Time // of jwt; zero when unknown
	url     string
	router  pb.TaskCommandRouterClient
	workdir string
}

func (c *sandboxConn) setAccess(jwt, url string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.jwt, c.url = jwt, url
	c.expires, _ = jwtExpiry(jwt)
}

func (p *Provider) cached(id string) *sandboxConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[id]
}

func (p *Provider) remember(c *sandboxConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c.id] = c
}

func (p *Provider) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, id)
}

// conn returns the sandbox's connection, attaching by ID when this driver
// has not seen the sandbox yet.
func (p *Provider) conn(ctx context.Context, id string) (*sandboxConn, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if c := p.cached(id); c != nil {
		return c, nil
	}
	c := &sandboxConn{id: id}
	if err := p.ready(ctx, c); err != nil {
		return nil, err
	}
	p.remember(c)
	return c, nil
}

// ready fills in what c lacks (task, router access) and learns the
// working directory, which also proves that commands run.
func (p *Provider) ready(ctx context.Context, c *sandboxConn) error {
	for c.taskID == "" {
		var res *pb.SandboxGetTaskIdResponse
		_, err := p.retry(ctx, "SandboxGetTaskIdV2", func(ctx context.Context) (err error) {
			res, err = p.cp.SandboxGetTaskIdV2(ctx, &pb.SandboxGetTaskIdRequest{SandboxId: c.id})
			return err
		})
		switch {
		case err != nil:
			return p.typed(ctx, c.id, "attach to sandbox "+c.id, err)
		case res.GetTaskId() != "":
			c.taskID = res.GetTaskId()
		case res.TaskResult != nil:
			return notFound(c.id) // it has already ended
		default: // still being scheduled
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	c.mu.Lock()
	haveAccess := c.url != ""
	c.mu.Unlock()
	if !haveAccess {
		if err := p.refreshAccess(ctx, c); err != nil {
			return err
		}
	}
	out, errOut, code, err := p.runHelper(ctx, c, []string{"pwd"}, nil, true)
	if err != nil {
		return err
	}
	wd := strings.TrimSpace(string(out))
	if code != 0 || !strings.HasPrefix(wd, "/") {
		return providers.Errorf(providers.ErrUnavailable, "sandbox %s started but a command in it failed (pwd: exit %d, %q %q)", c.id, code, out, errOut)
	}
	c.workdir = wd
	return nil
}

// refreshAccess fetches the router's address and a fresh token.
func (p *Provider) refreshAccess(ctx context.Context, c *sandboxConn) error {
	var res *pb.SandboxGetCommandRouterAccessResponse
	_, err := p.retry(ctx, "SandboxGetCommandRouterAccess", func(ctx context.Context) (err error) {
		res, err = p.cp.SandboxGetCommandRouterAccess(ctx, &pb.SandboxGetCommandRouterAccessRequest{
			Target: &pb.SandboxGetCommandRouterAccessRequest_SandboxId{SandboxId: c.id}})
		return err
	})
	if status.Code(err) == codes.FailedPrecondition {
		if gone := p.gone(ctx, c.id); gone != nil {
			return gone
		}
	}
	if err != nil {
		return p.typed(ctx, c.id, "reach the command router of sandbox "+c.id, err)
	}
	c.setAccess(res.GetJwt(), res.GetUrl())
	return nil
}

// client returns the router client and the context that authenticates a
// call, renewing the token when it is about to expire.
func (p *Provider) client(ctx context.Context, c *sandboxConn) (pb.TaskCommandRouterClient, context.Context, error) {
	c.mu.Lock()
	stale := !c.expires.IsZero() && time.Until(c.expires) < 30*time.Second
	c.mu.Unlock()
	if stale {
		if err := p.refreshAccess(ctx, c); err != nil {
			return nil, nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.router == nil {
		cc, err := p.dialRouter(c.url)
		if err != nil {
			return nil, nil, providers.Errorf(providers.ErrUnavailable, "sandbox %s: %v", c.id, err)
		}
		c.router = pb.NewTaskCommandRouterClient(cc)
	}
	return c.router, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.jwt), nil
}

// dialRouter connects to a router, sharing connections by address. Router
// URLs must be https; they are dialled in plaintext only when the control
// plane itself is on this machine (a local server), as the SDKs do.
func (p *Provider) dialRouter(raw string) (*grpc.ClientConn, error) {
	if !strings.HasPrefix(raw, "https://") {
		return nil, fmt.Errorf("Modal gave a command router URL that is not https: %q", raw)
	}
	addr, creds, err := target(raw)
	if err != nil {
		return nil, err
	}
	if p.localRouter {
		creds = insecure.NewCredentials()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc := p.routers[addr]; cc != nil {
		return cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, dialOptions(creds)...)
	if err != nil {
		return nil, err
	}
	p.routers[addr] = cc
	return cc, nil
}

// routerCall runs one unary router call: transient failures are retried
// (10 times, from 10ms, as the SDK does) and an expired token is renewed
// once.
func (p *Provider) routerCall(ctx context.Context, c *sandboxConn, call func(ctx context.Context, rc pb.TaskCommandRouterClient) error) error {
	delay := 10 * time.Millisecond
	renewed := false
	for attempt := 0; ; attempt++ {
		rc, actx, err := p.client(ctx, c)
		if err != nil {
			return err
		}
		err = call(actx, rc)
		switch code := status.Code(err); {
		case err == nil || ctx.Err() != nil:
			return err
		case code == codes.Unauthenticated && !renewed:
			renewed = true
			if err := p.refreshAccess(ctx, c); err != nil {
				return err
			}
			continue
		case transient(code) && attempt < 10:
		default:
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// routerErr explains a failed router call.
func (p *Provider) routerErr(ctx context.Context, c *sandboxConn, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var pe *providers.Error
	if errors.As(err, &pe) {
		return err
	}
	if code := status.Code(err); code == codes.NotFound || code == codes.Unavailable || code == codes.FailedPrecondition {
		kctx, cancel := detached(ctx)
		defer cancel()
		if gone := p.gone(kctx, c.id); gone != nil {
			return gone
		}
	}
	return p.typed(ctx, c.id, what+" in sandbox "+c.id, err)
}

// execOpts are the optional parts of a command start.
type execOpts struct {
	workdir string
	env     map[string]string
	timeout time.Duration
}

func (p *Provider) start(ctx context.Context, c *sandboxConn, execID string, args []string, o execOpts) error {
	req := &pb.TaskExecStartRequest{TaskId: c.taskID, ExecId: execID, CommandArgs: args,
		StdoutConfig: pb.TaskExecStdoutConfig_TASK_EXEC_STDOUT_CONFIG_PIPE,
		StderrConfig: pb.TaskExecStderrConfig_TASK_EXEC_STDERR_CONFIG_PIPE}
	if o.workdir != "" {
		req.Workdir = &o.workdir
	}
	if o.timeout > 0 {
		secs := uint32((o.timeout + time.Second - 1) / time.Second)
		req.TimeoutSecs = &secs
	}
	if len(o.env) > 0 { // as the SDK sends it
		req.SecretSources = []*pb.SecretSource{{Source: &pb.SecretSource_Env{Env: &pb.StringMap{Contents: o.env}}}}
	}
	// A retried start with the same exec ID does not run the command twice.
	return p.routerCall(ctx, c, func(ctx context.Context, rc pb.TaskCommandRouterClient) error {
		_, err := rc.TaskExecStart(ctx, req)
		return err
	})
}

// readOutput copies one stream to w until the command has exited and the
// stream is drained, resuming at the offset reached when a stream breaks.
func (p *Provider) readOutput(ctx context.Context, c *sandboxConn, execID string, fd pb.TaskExecStdioFileDescriptor, w io.Writer) error {
	var offset uint64
	breaks := 0
	for {
		err := p.routerCall(ctx, c, func(ctx context.Context, rc pb.TaskCommandRouterClient) error {
			stream, err := rc.TaskExecStdioRead(ctx, &pb.TaskExecStdioReadRequest{TaskId: c.taskID, ExecId: execID, Offset: offset, FileDescriptor: fd})
			if err != nil {
				return err
			}
			for {
				msg, err := stream.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				offset += uint64(len(msg.GetData()))
				if w != nil && len(msg.GetData()) > 0 {
					if _, err := w.Write(msg.GetData()); err != nil {
						return &writeError{err}
					}
				}
			}
		})
		var we *writeError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &we):
			return we.err
		case ctx.Err() != nil:
			return ctx.Err()
		case transient(status.Code(err)) && breaks < 10:
			breaks++
			p.log.Debug("modal: output stream broke; resuming", "sandbox", c.id, "offset", offset, "err", err)
			continue
		}
		return p.routerErr(ctx, c, "read command output", err)
	}
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// wait blocks until the command exits and returns its status the shell's
// way: the exit code, or 128+N after signal N.
func (p *Provider) wait(ctx context.Context, c *sandboxConn, execID string) (int, error) {
	for {
		var res *pb.TaskExecWaitResponse
		err := p.routerCall(ctx, c, func(ctx context.Context, rc pb.TaskCommandRouterClient) error {
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			var err error
			res, err = rc.TaskExecWait(wctx, &pb.TaskExecWaitRequest{TaskId: c.taskID, ExecId: execID})
			return err
		})
		if err != nil {
			return -1, p.routerErr(ctx, c, "wait for a command", err)
		}
		switch st := res.GetExitStatus().(type) {
		case *pb.TaskExecWaitResponse_Code:
			return int(st.Code), nil
		case *pb.TaskExecWaitResponse_Signal:
			return 128 + int(st.Signal), nil
		}
		return -1, providers.Errorf(providers.ErrUnavailable, "sandbox %s: the router reported neither an exit code nor a signal", c.id)
	}
}

// feedStdin streams r to the command's stdin, then closes it.
func (p *Provider) feedStdin(ctx context.Context, c *sandboxConn, execID string, r io.Reader) error {
	rc, actx, err := p.client(ctx, c)
	if err != nil {
		return err
	}
	stream, err := rc.TaskExecStdinWriteStream(actx)
	if err != nil {
		return err
	}
	send := func(m *pb.TaskExecStdinWriteStreamRequest) error {
		if err := stream.Send(m); err != nil {
			_, err = stream.CloseAndRecv() // the real error
			return err
		}
		return nil
	}
	if err := send(&pb.TaskExecStdinWriteStreamRequest{Payload: &pb.TaskExecStdinWriteStreamRequest_Start{
		Start: &pb.TaskExecStdinWriteStreamStart{TaskId: c.taskID, ExecId: execID}}}); err != nil {
		return err
	}
	buf := make([]byte, stdinChunk)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := send(&pb.TaskExecStdinWriteStreamRequest{Payload: &pb.TaskExecStdinWriteStreamRequest_Data{Data: bytes.Clone(buf[:n])}}); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			stream.CloseSend()
			return rerr
		}
	}
	if err := send(&pb.TaskExecStdinWriteStreamRequest{Payload: &pb.TaskExecStdinWriteStreamRequest_End{End: &pb.TaskExecStdinWriteStreamEnd{}}}); err != nil {
		return err
	}
	_, err = stream.CloseAndRecv()
	return err
}

// endStdin sends end-of-file after whatever stdin the command got so far.
func (p *Provider) endStdin(ctx context.Context, c *sandboxConn, execID string) {
	var st *pb.TaskExecStdinStatusResponse
	err := p.routerCall(ctx, c, func(ctx context.Context, rc pb.TaskCommandRouterClient) (err error) {
		st, err = rc.TaskExecStdinStatus(ctx, &pb.TaskExecStdinStatusRequest{TaskId: c.taskID, ExecId: execID})
		return err
	})
	if err != nil || st.GetClosed() {
		return
	}
	p.routerCall(ctx, c, func(ctx context.Context, rc pb.TaskCommandRouterClient) error {
		_, err := rc.TaskExecStdinWrite(ctx, &pb.TaskExecStdinWriteRequest{TaskId: c.taskID, ExecId: execID, Offset: st.GetNumBytesWritten(), Eof: true})
		return err
	})
}

// closeStdin sends end-of-file, so a command reading stdin does not wait.
func (p *Provider) closeStdin(ctx context.Context, c *sandboxConn, execID string) error {
	return p.routerCall(ctx, c, func(ctx context.Context, rc pb.TaskCommandRouterClient) error {
		_, err := rc.TaskExecStdinWrite(ctx, &pb.TaskExecStdinWriteRequest{TaskId: c.taskID, ExecId: execID, Eof: true})
		return err
	})
}

// runHelper runs a short command the way the SDK runs fs-tools: start,
// feed stdin (concurrently), wait, then read stdout (unless the caller has
// no use for it: one round trip less), and stderr on failure.
func (p *Provider) runHelper(ctx context.Context, c *sandboxConn, args []string, stdin io.Reader, wantStdout bool) (stdout, stderr []byte, code int, err error) {
	execID := uuid.NewString()
	if err := p.start(ctx, c, execID, args, execOpts{}); err != nil {
		if stdin != nil && ctx.Err() != nil {
			// The start may yet reach the sandbox. Starting again with the
			// same exec ID runs nothing twice and settles that it exists;
			// then its input is ended and its end awaited, so that nothing
			// is left waiting for input or writing after this returns.
			kctx, cancel := detached(ctx)
			defer cancel()
			if p.start(kctx, c, execID, args, execOpts{}) == nil {
				p.endStdin(kctx, c, execID)
				p.wait(kctx, c, execID)
			}
		}
		return nil, nil, -1, p.routerErr(ctx, c, "start "+args[0], err)
	}
	stdinDone := make(chan error, 1)
	if stdin != nil {
		go func() { stdinDone <- p.feedStdin(ctx, c, execID, stdin) }()
	}
	code, err = p.wait(ctx, c, execID)
	if err != nil {
		if stdin != nil {
			// Given up half way: end the input where it stopped, so the
			// helper finishes instead of waiting for the rest forever.
			<-stdinDone
			kctx, cancel := detached(ctx)
			defer cancel()
			p.endStdin(kctx, c, execID)
			p.wait(kctx, c, execID)
		}
		return nil, nil, -1, err
	}
	if stdin != nil {
		if serr := <-stdinDone; serr != nil && code == 0 {
			return nil, nil, -1, p.routerErr(ctx, c, "send input to "+args[0], serr)
		}
	}
	var out, errOut bytes.Buffer
	if wantStdout {
		if err := p.readOutput(ctx, c, execID, pb.TaskExecStdioFileDescriptor_TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT, &out); err != nil {
			return nil, nil, -1, err
		}
	}
	if code != 0 {
		if err := p.readOutput(ctx, c, execID, pb.TaskExecStdioFileDescriptor_TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR, &errOut); err != nil {
			return nil, nil, -1, err
		}
	}
	return out.Bytes(), errOut.Bytes(), code, nil
}
