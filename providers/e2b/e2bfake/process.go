package e2bfake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	pb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/process"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/process/processconnect"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

// process is a command started through the process service.
type process struct {
	pid    uint32
	config *pb.ProcessConfig
	tag    *string
	proc   *fakebox.Proc

	mu    sync.Mutex
	stdin io.WriteCloser // nil unless started with stdin, or once closed
}

// signal signals the whole process group, so children die too.
func (p *process) signal(sig syscall.Signal) error { return p.proc.Signal(sig) }

type processService struct {
	processconnect.UnimplementedProcessHandler
	s *Server
}

// outputEvent is a data event and the channel to signal once it was sent.
type outputEvent struct {
	ev   *pb.ProcessEvent
	sent chan struct{}
}

// eventWriter turns a pipe into data events. Write waits until its bytes
// were sent, so they need no copy.
type eventWriter struct {
	events chan<- outputEvent
	sent   chan struct{}
	stderr bool
}

func newEventWriter(events chan<- outputEvent, stderr bool) eventWriter {
	return eventWriter{events: events, sent: make(chan struct{}), stderr: stderr}
}

func (w eventWriter) Write(b []byte) (int, error) {
	data := &pb.ProcessEvent_DataEvent{}
	if w.stderr {
		data.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: b}
	} else {
		data.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: b}
	}
	w.events <- outputEvent{&pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: data}}, w.sent}
	<-w.sent
	return len(b), nil
}

// Start runs a command and streams start, data... and end events. The
// Connect deadline (Connect-Timeout-Ms) kills the process group, as envd
// does; a client that merely goes away leaves the command running.
func (ps *processService) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	sb := sandboxFrom(ctx)
	cfg := req.Msg.GetProcess()
	if cfg.GetCmd() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("process.cmd is required"))
	}
	if req.Msg.Pty != nil {
		return connect.NewError(connect.CodeUnimplemented, errors.New("this fake does not emulate a pty"))
	}
	events := make(chan outputEvent)
	var tag string
	if req.Msg.Tag != nil {
		tag = *req.Msg.Tag
	}
	sb.mu.Lock()
	fp, err := sb.Start(fakebox.Spec{
		Argv: append([]string{cfg.GetCmd()}, cfg.GetArgs()...), Cwd: cfg.GetCwd(), Env: cfg.GetEnvs(),
		Stdin: req.Msg.GetStdin(), Stdout: newEventWriter(events, false), Stderr: newEventWriter(events, true), Tag: tag,
	})
	if err != nil {
		sb.mu.Unlock()
		if errors.Is(err, fakebox.ErrKilled) {
			return connect.NewError(connect.CodeUnavailable, err)
		}
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	p := &process{pid: uint32(fp.PID), config: cfg, tag: req.Msg.Tag, proc: fp, stdin: fp.Stdin}
	sb.procs[p.pid] = p
	sb.mu.Unlock()

	timedOut := make(chan struct{})
	if dl, ok := ctx.Deadline(); ok {
		t := time.AfterFunc(time.Until(dl), func() { close(timedOut); p.signal(syscall.SIGKILL) })
		defer t.Stop()
	}
	var end *pb.ProcessEvent_EndEvent
	go func() {
		exit := fp.Wait()
		end = &pb.ProcessEvent_EndEvent{ExitCode: int32(exit.Code), Exited: exit.Signal == 0, Status: exit.Status}
		if exit.Code != 0 || exit.Signal != 0 {
			msg := exit.Status // as envd reports a failed command's wait error
			end.Error = &msg
		}
		sb.mu.Lock()
		delete(sb.procs, p.pid)
		sb.mu.Unlock()
		close(events)
	}()

	cutAfter := ps.s.faults.TakeCut(cutStream)
	sent, sendErr := 0, error(nil)
	send := func(ev *pb.ProcessEvent) {
		if sendErr == nil {
			sendErr = stream.Send(&pb.StartResponse{Event: ev})
		}
	}
	send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: p.pid}}})
	// Keepalive events on a quiet stream, every Keepalive-Ping-Interval
	// seconds, as envd sends them (Options.KeepaliveInterval overrides).
	var keepalive <-chan time.Time
	if iv := ps.s.keepaliveInterval(req.Header().Get("Keepalive-Ping-Interval")); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		keepalive = t.C
	}
	for out := range drain(events, keepalive, func() {
		send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}})
	}) {
		send(out.ev)
		d := out.ev.GetData()
		sent += len(d.GetStdout()) + len(d.GetStderr())
		out.sent <- struct{}{}
		if cutAfter >= 0 && sent >= cutAfter {
			// Drop the connection without an end-of-stream message; keep
			// draining so the command is not blocked on its output.
			go func() {
				for out := range events {
					out.sent <- struct{}{}
				}
			}()
			panic(http.ErrAbortHandler)
		}
	}
	select {
	case <-timedOut:
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the command exceeded its deadline and was killed"))
	default:
	}
	send(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}})
	return sendErr
}

// drain yields the events until the channel closes, calling idle on each
// tick in between.
func drain(events <-chan outputEvent, tick <-chan time.Time, idle func()) func(func(outputEvent) bool) {
	return func(yield func(outputEvent) bool) {
		for {
			select {
			case out, ok := <-events:
				if !ok || !yield(out) {
					return
				}
			case <-tick:
				idle()
			}
		}
	}
}

func (ps *processService) find(ctx context.Context, sel *pb.ProcessSelector) (*process, error) {
	sb := sandboxFrom(ctx)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for _, p := range sb.procs {
		switch s := sel.GetSelector().(type) {
		case *pb.ProcessSelector_Pid:
			if p.pid == s.Pid {
				return p, nil
			}
		case *pb.ProcessSelector_Tag:
			if p.tag != nil && *p.tag == s.Tag {
				return p, nil
			}
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process %v not found", sel))
}

func (ps *processService) List(ctx context.Context, req *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	sb := sandboxFrom(ctx)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	out := &pb.ListResponse{}
	for _, p := range sb.procs {
		out.Processes = append(out.Processes, &pb.ProcessInfo{Config: p.config, Pid: p.pid, Tag: p.tag})
	}
	sort.Slice(out.Processes, func(i, j int) bool { return out.Processes[i].Pid < out.Processes[j].Pid })
	return connect.NewResponse(out), nil
}

func (ps *processService) SendSignal(ctx context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	p, err := ps.find(ctx, req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	sig := syscall.SIGKILL
	switch req.Msg.GetSignal() {
	case pb.Signal_SIGNAL_SIGTERM:
		sig = syscall.SIGTERM
	case pb.Signal_SIGNAL_SIGKILL:
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unsupported signal %v", req.Msg.GetSignal()))
	}
	if err := p.signal(sig); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

func (ps *processService) SendInput(ctx context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	p, err := ps.find(ctx, req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the process was not started with stdin, or its stdin is closed"))
	}
	if _, err := p.stdin.Write(req.Msg.GetInput().GetStdin()); err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("write stdin: %v", err))
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

func (ps *processService) CloseStdin(ctx context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	p, err := ps.find(ctx, req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}
