package docker

import (
	"context"
	"io"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor"
)

// Background processes are the shared supervisor's (providers/supervisor);
// the driver lends it RunArgv, a bare exec: Exec's relays and kill marker
// would cost a process start its figures, and a process must not carry
// the marker of the exec that started it.
var (
	_ providers.Processes     = (*Provider)(nil)
	_ providers.ProcessRunner = (*Provider)(nil)
	_ supervisor.ArgvRunner   = (*Provider)(nil)
)

// RunArgv runs argv in the sandbox's workdir, with no shell or marker
// around it: through the sandbox's channel (channel.go), else an exec.
func (p *Provider) RunArgv(ctx context.Context, id string, argv []string, stdin io.Reader, stdout io.Writer) (int, string, error) {
	b, err := p.box(ctx, id)
	if err != nil {
		return -1, "", err
	}
	if code, errOut, ok, err := p.runOnChannel(ctx, id, b.workdir, argv, stdin, stdout); ok {
		return code, errOut, err
	}
	created, err := p.cli.ExecCreate(ctx, id, client.ExecCreateOptions{
		Cmd: argv, WorkingDir: b.workdir, Env: envList(b.env), AttachStdin: stdin != nil, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return -1, "", p.apiErr(id, "run command", err)
	}
	att, err := p.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, "", p.apiErr(id, "run command", err)
	}
	defer att.Close()
	// The hijacked stream ignores ctx: close it when ctx ends, so a caller
	// that gives up (a wait, a cancelled run) is not held until the end.
	defer context.AfterFunc(ctx, func() { att.Close() })()
	if stdin != nil {
		go func() {
			io.Copy(att.Conn, stdin)
			att.CloseWrite()
		}()
	}
	var errOut limitedBuffer
	if _, err := stdcopy.StdCopy(orDiscard(stdout), &errOut, att.Reader); err != nil {
		if ctx.Err() != nil {
			return -1, "", ctx.Err()
		}
		return -1, "", p.apiErr(id, "run command", err)
	}
	code, err := p.exitCode(ctx, created.ID)
	if err != nil {
		return -1, "", p.apiErr(id, "run command", err)
	}
	return code, errOut.String(), nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(b []byte) (int, error) {
	if room := 4<<10 - len(l.b); room > 0 {
		l.b = append(l.b, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
