package modalfake

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// FSToolsPath is where Modal's SDKs expect the file-system helper in every
// sandbox; the fake emulates it instead of running a binary.
const FSToolsPath = "/__modal/.bin/modal-sandbox-fs-tools"

// readChunk caps one TaskExecStdioRead message.
const readChunk = 256 << 10

type router struct {
	pb.UnimplementedTaskCommandRouterServer
	s *Server
}

func (r *router) validJWT(jwt string) bool {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	for _, sb := range r.s.sandboxes {
		if sb.routerJWT == jwt {
			return true
		}
	}
	return false
}

// execution is one command: its output is kept whole, by stream, so that
// readers can start at any offset, before or after the exit.
type execution struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	out     [2][]byte     // stdout, stderr
	exited  bool
	code    int32
	signal  int32 // non-zero when a signal ended it
	stdin   io.WriteCloser
	written uint64 // stdin bytes delivered
	closed  bool   // stdin closed
	proc    *fakebox.Proc
}

func newExecution() *execution { return &execution{changed: make(chan struct{})} }

// notify wakes everyone waiting for a change; e.mu is held.
func (e *execution) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

type outWriter struct {
	e  *execution
	fd int
}

func (w outWriter) Write(b []byte) (int, error) {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	w.e.out[w.fd] = append(w.e.out[w.fd], b...)
	w.e.notify()
	return len(b), nil
}

func (e *execution) exit(code, signal int32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.exited, e.code, e.signal = true, code, signal
	e.notify()
}

func (e *execution) kill() {
	e.mu.Lock()
	proc := e.proc
	e.mu.Unlock()
	if proc != nil {
		proc.Signal(syscall.SIGKILL)
	}
}

func (r *router) find(taskID, execID string) (*sandbox, *execution, error) {
	r.s.mu.Lock()
	sb := r.s.tasks[taskID]
	r.s.mu.Unlock()
	if sb == nil {
		return nil, nil, status.Errorf(codes.NotFound, "task %s not found", taskID)
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.res != nil {
		return nil, nil, status.Errorf(codes.NotFound, "task %s has finished", taskID)
	}
	if execID == "" {
		return sb, nil, nil
	}
	e := sb.execs[execID]
	if e == nil {
		return nil, nil, status.Errorf(codes.NotFound, "exec %s not found", execID)
	}
	return sb, e, nil
}

func (r *router) TaskExecStart(ctx context.Context, req *pb.TaskExecStartRequest) (*pb.TaskExecStartResponse, error) {
	sb, _, err := r.find(req.GetTaskId(), "")
	if err != nil {
		return nil, err
	}
	if req.GetExecId() == "" || len(req.GetCommandArgs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "exec_id and command_args are required")
	}
	sb.mu.Lock()
	if sb.execs[req.GetExecId()] != nil { // a retried start: already running
		sb.mu.Unlock()
		return &pb.TaskExecStartResponse{}, nil
	}
	e := newExecution()
	sb.execs[req.GetExecId()] = e
	sb.mu.Unlock()

	if req.GetCommandArgs()[0] == FSToolsPath {
		pr, pw := io.Pipe()
		e.stdin = pw
		go func() { runFSTools(sb, req.GetCommandArgs()[1:], pr, outWriter{e, 0}, outWriter{e, 1}, e) }()
		return &pb.TaskExecStartResponse{}, nil
	}

	env := map[string]string{}
	for _, src := range req.GetSecretSources() {
		for k, v := range src.GetEnv().GetContents() {
			env[k] = v
		}
	}
	for k, v := range req.GetEnv() {
		env[k] = v
	}
	spec := fakebox.Spec{Argv: req.GetCommandArgs(), Cwd: req.GetWorkdir(), Env: env, Stdin: true, Tag: req.GetExecId()}
	if req.GetStdoutConfig() == pb.TaskExecStdoutConfig_TASK_EXEC_STDOUT_CONFIG_PIPE {
		spec.Stdout = outWriter{e, 0}
	}
	switch req.GetStderrConfig() {
	case pb.TaskExecStderrConfig_TASK_EXEC_STDERR_CONFIG_PIPE:
		spec.Stderr = outWriter{e, 1}
	case pb.TaskExecStderrConfig_TASK_EXEC_STDERR_CONFIG_STDOUT:
		spec.Stderr = spec.Stdout
	}
	proc, err := sb.box.Start(spec)
	if err != nil {
		// Modal reports a command that cannot start as its exit.
		outWriter{e, 1}.Write([]byte(err.Error() + "\n"))
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.exit(127, 0)
		return &pb.TaskExecStartResponse{}, nil
	}
	e.mu.Lock()
	e.stdin, e.proc = proc.Stdin, proc
	e.mu.Unlock()
	var timer *time.Timer
	if t := req.GetTimeoutSecs(); t > 0 {
		timer = time.AfterFunc(time.Duration(t)*time.Second, e.kill)
	}
	go func() {
		x := proc.Wait()
		if timer != nil {
			timer.Stop()
		}
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.exit(int32(x.Code), int32(x.Signal))
	}()
	return &pb.TaskExecStartResponse{}, nil
}

// TaskExecStdioRead streams one output from an offset and ends once the
// command has exited and everything was sent.
func (r *router) TaskExecStdioRead(req *pb.TaskExecStdioReadRequest, stream grpc.ServerStreamingServer[pb.TaskExecStdioReadResponse]) error {
	_, e, err := r.find(req.GetTaskId(), req.GetExecId())
	if err != nil {
		return err
	}
	fd := 0
	if req.GetFileDescriptor() == pb.TaskExecStdioFileDescriptor_TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR {
		fd = 1
	}
	cutAfter := r.s.takeStreamCut()
	off, sent := req.GetOffset(), 0
	for {
		e.mu.Lock()
		var chunk []byte
		if off < uint64(len(e.out[fd])) {
			chunk = e.out[fd][off:min(uint64(len(e.out[fd])), off+readChunk)]
		}
		exited, changed := e.exited, e.changed
		e.mu.Unlock()
		if len(chunk) > 0 {
			if cutAfter >= 0 && sent+len(chunk) > cutAfter {
				chunk = chunk[:cutAfter-sent]
				if len(chunk) > 0 {
					stream.Send(&pb.TaskExecStdioReadResponse{Data: chunk})
				}
				return status.Error(codes.Unavailable, "stream cut by fault injection")
			}
			if err := stream.Send(&pb.TaskExecStdioReadResponse{Data: chunk}); err != nil {
				return err
			}
			off += uint64(len(chunk))
			sent += len(chunk)
			continue
		}
		if exited {
			return nil
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

// exitStatus returns the exit (ok once exited) and the channel that closes
// on the next change, read together so that no exit goes unnoticed.
func exitStatus(e *execution) (code, signal *int32, ok bool, changed <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.exited {
		return nil, nil, false, e.changed
	}
	c, s := e.code, e.signal
	if s != 0 {
		return nil, &s, true, e.changed
	}
	return &c, nil, true, e.changed
}

func (r *router) TaskExecWait(ctx context.Context, req *pb.TaskExecWaitRequest) (*pb.TaskExecWaitResponse, error) {
	_, e, err := r.find(req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	for {
		code, sig, ok, changed := exitStatus(e)
		if ok {
			if sig != nil {
				return &pb.TaskExecWaitResponse{ExitStatus: &pb.TaskExecWaitResponse_Signal{Signal: *sig}}, nil
			}
			return &pb.TaskExecWaitResponse{ExitStatus: &pb.TaskExecWaitResponse_Code{Code: *code}}, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

func (r *router) TaskExecPoll(ctx context.Context, req *pb.TaskExecPollRequest) (*pb.TaskExecPollResponse, error) {
	_, e, err := r.find(req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	code, sig, ok, _ := exitStatus(e)
	switch {
	case !ok:
		return &pb.TaskExecPollResponse{}, nil
	case sig != nil:
		return &pb.TaskExecPollResponse{ExitStatus: &pb.TaskExecPollResponse_Signal{Signal: *sig}}, nil
	}
	return &pb.TaskExecPollResponse{ExitStatus: &pb.TaskExecPollResponse_Code{Code: *code}}, nil
}

// writeStdin delivers data that starts at offset; bytes already delivered
// (a retried write) are skipped, a gap is refused.
func (e *execution) writeStdin(offset uint64, data []byte, eof bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if offset > e.written {
		return status.Errorf(codes.InvalidArgument, "stdin offset %d is past the %d bytes written", offset, e.written)
	}
	if skip := e.written - offset; skip < uint64(len(data)) {
		data = data[skip:]
	} else {
		data = nil
	}
	if len(data) > 0 {
		if e.closed {
			return status.Error(codes.FailedPrecondition, "stdin is closed")
		}
		// The pipe may block while the command is busy; unlock meanwhile.
		w := e.stdin
		e.mu.Unlock()
		_, err := w.Write(data)
		e.mu.Lock()
		if err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, os.ErrClosed) {
			return status.Errorf(codes.Internal, "write stdin: %v", err)
		}
		e.written += uint64(len(data))
	}
	if eof && !e.closed {
		e.closed = true
		e.stdin.Close()
	}
	return nil
}

func (r *router) TaskExecStdinWrite(ctx context.Context, req *pb.TaskExecStdinWriteRequest) (*pb.TaskExecStdinWriteResponse, error) {
	_, e, err := r.find(req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	if err := e.writeStdin(req.GetOffset(), req.GetData(), req.GetEof()); err != nil {
		return nil, err
	}
	return &pb.TaskExecStdinWriteResponse{}, nil
}

func (r *router) TaskExecStdinWriteStream(stream grpc.ClientStreamingServer[pb.TaskExecStdinWriteStreamRequest, pb.TaskExecStdinWriteStreamResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message of a stdin stream must be start")
	}
	_, e, err := r.find(start.GetTaskId(), start.GetExecId())
	if err != nil {
		return err
	}
	off := start.GetOffset()
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&pb.TaskExecStdinWriteStreamResponse{})
		}
		if err != nil {
			return err
		}
		switch p := msg.GetPayload().(type) {
		case *pb.TaskExecStdinWriteStreamRequest_Data:
			if err := e.writeStdin(off, p.Data, false); err != nil {
				return err
			}
			off += uint64(len(p.Data))
		case *pb.TaskExecStdinWriteStreamRequest_End:
			if err := e.writeStdin(off, nil, true); err != nil {
				return err
			}
		default:
			return status.Error(codes.InvalidArgument, "start may only come first")
		}
	}
}

func (r *router) TaskExecStdinStatus(ctx context.Context, req *pb.TaskExecStdinStatusRequest) (*pb.TaskExecStdinStatusResponse, error) {
	_, e, err := r.find(req.GetTaskId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return &pb.TaskExecStdinStatusResponse{NumBytesWritten: e.written, Closed: e.closed}, nil
}
