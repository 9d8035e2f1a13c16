// Package modalfake is a fake of Modal's sandbox API: a real plaintext gRPC
// server that speaks Modal's control plane (modal.client.ModalClient) and
// its task command router (modal.task_command_router.TaskCommandRouter)
// closely enough for Modal's official JS SDK and for the providers/modal
// driver.
//
// Each fake sandbox is a temporary directory; commands really run there (in
// their own process group, with a minimal environment), but on this machine:
// the fake gives no isolation and must only run trusted test code. The
// sandbox's working directory is its temp dir, whatever the definition asks
// for; the fs-tools helper the SDK execs for file operations is emulated and
// confined to that directory.
//
// One listener serves both services. The router's URL is handed out as
// https://127.0.0.1:<port>: clients dial it in plaintext because the control
// plane is on loopback, as Modal's SDKs do for a local server. Point clients
// at it with
//
//	MODAL_SERVER_URL=http://127.0.0.1:<port>
//	MODAL_TOKEN_ID=<Options.TokenID>
//	MODAL_TOKEN_SECRET=<Options.TokenSecret>
package modalfake

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// BuilderVersion is the image builder version the fake's environment reports.
const BuilderVersion = "2025.06"

// Options configure a Server. The zero value is usable.
type Options struct {
	// TokenID and TokenSecret, when set, are the only token pair accepted;
	// when empty any non-empty pair is.
	TokenID, TokenSecret string
	// BaseDir holds the sandboxes' directories; empty means a new temp dir
	// that Close removes.
	BaseDir string
	// AuthTokenTTL is the lifetime of the JWTs AuthTokenGet issues, and
	// RouterTokenTTL of the router tokens (default 1h each).
	AuthTokenTTL, RouterTokenTTL time.Duration
	// Logger receives one line per call; nil discards.
	Logger *slog.Logger
}

// Server is the fake. Start it with Listen, stop it with Close, which also
// kills every sandbox.
type Server struct {
	pb.UnimplementedModalClientServer
	opts   Options
	boxes  *fakebox.Boxes
	grpc   *grpc.Server
	ln     net.Listener
	router *router

	mu        sync.Mutex
	apps      map[string]string // name -> app ID
	images    map[string]*pb.Image
	sandboxes map[string]*sandbox // by sandbox ID
	tasks     map[string]*sandbox // by task ID
	authJWTs  map[string]bool
	faults    faults
	calls     map[string]int // calls by method, for tests
}

// New makes a fake server; Listen starts serving.
func New(opts Options) (*Server, error) {
	if opts.AuthTokenTTL <= 0 {
		opts.AuthTokenTTL = time.Hour
	}
	if opts.RouterTokenTTL <= 0 {
		opts.RouterTokenTTL = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, apps: map[string]string{}, images: map[string]*pb.Image{},
		sandboxes: map[string]*sandbox{}, tasks: map[string]*sandbox{}, authJWTs: map[string]bool{}, calls: map[string]int{}}
	boxes, err := fakebox.New(opts.BaseDir)
	if err != nil {
		return nil, err
	}
	s.boxes = boxes
	s.router = &router{s: s}
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(100<<20), grpc.MaxSendMsgSize(100<<20),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)
	pb.RegisterModalClientServer(s.grpc, s)
	pb.RegisterTaskCommandRouterServer(s.grpc, s.router)
	return s, nil
}

// Listen serves on addr ("127.0.0.1:0" picks a port) in the background and
// returns the URL to set as MODAL_SERVER_URL.
func (s *Server) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	s.ln = ln
	go s.grpc.Serve(ln)
	return s.URL(), nil
}

// URL is the control plane's URL (MODAL_SERVER_URL).
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// routerURL is what clients are told to dial for the task command router.
func (s *Server) routerURL() string { return "https://" + s.ln.Addr().String() }

// Close stops serving, kills every sandbox and removes the directories the
// fake made.
func (s *Server) Close() error {
	s.grpc.Stop()
	s.mu.Lock()
	all := make([]*sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		all = append(all, sb)
	}
	s.mu.Unlock()
	for _, sb := range all {
		sb.finish(pb.GenericResult_GENERIC_STATUS_TERMINATED, "fake closed")
	}
	return s.boxes.Close()
}

// Calls reports how many calls of a method (e.g. "SandboxCreateV2",
// "TaskExecStart") the fake answered or refused.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// SandboxInfo describes a live sandbox, for tests.
type SandboxInfo struct {
	ID, TaskID, ImageRef, Dir string
	Tags                      map[string]string
	Timeout                   time.Duration
	Workdir                   string // what the definition asked for
}

// Sandboxes lists the sandboxes that have not finished.
func (s *Server) Sandboxes() []SandboxInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SandboxInfo
	for _, sb := range s.sandboxes {
		if sb.result() != nil {
			continue
		}
		info := SandboxInfo{ID: sb.id, TaskID: sb.taskID, Dir: sb.box.Home, Tags: sb.tagMap(), Timeout: sb.timeout, Workdir: sb.wantWorkdir}
		if img := s.images[sb.imageID]; img != nil && len(img.DockerfileCommands) > 0 {
			info.ImageRef = strings.TrimPrefix(img.DockerfileCommands[0], "FROM ")
		}
		out = append(out, info)
	}
	return out
}

func method(full string) string { return full[strings.LastIndexByte(full, '/')+1:] }

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.admit(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.admit(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// admit counts the call, applies injected faults and checks credentials:
// the token pair and the auth JWT on the control plane, the router JWT on
// the router.
func (s *Server) admit(ctx context.Context, full string) error {
	m := method(full)
	s.mu.Lock()
	s.calls[m]++
	s.mu.Unlock()
	s.opts.Logger.Debug("modalfake", "call", full)
	if err := s.takeFault(ctx, full); err != nil {
		return err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if strings.HasPrefix(full, "/modal.task_command_router.") {
		jwt, ok := strings.CutPrefix(get("authorization"), "Bearer ")
		if !ok || !s.router.validJWT(jwt) {
			return status.Error(codes.Unauthenticated, "missing or invalid router token")
		}
		return nil
	}
	id, secret := get("x-modal-token-id"), get("x-modal-token-secret")
	if id == "" || secret == "" || (s.opts.TokenID != "" && (id != s.opts.TokenID || secret != s.opts.TokenSecret)) {
		return status.Error(codes.Unauthenticated, "Token ID or secret is invalid. Please check your Modal token credentials.")
	}
	if m != "AuthTokenGet" {
		s.mu.Lock()
		ok := s.authJWTs[get("x-modal-auth-token")]
		s.mu.Unlock()
		if !ok {
			return status.Error(codes.Unauthenticated, "missing or unknown x-modal-auth-token; call AuthTokenGet first")
		}
	}
	return nil
}

// newJWT makes a token shaped like a JWT (header.payload.signature) whose
// payload carries exp, which is all clients read from it.
func newJWT(ttl time.Duration) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body, _ := json.Marshal(map[string]any{"exp": time.Now().Add(ttl).Unix(), "jti": randomAlnum(16)})
	return head + "." + enc.EncodeToString(body) + "." + randomAlnum(22)
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomAlnum(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return string(b)
}

// newSandboxID is V2-shaped (26 characters after "sb-", not 22): the SDK
// picks the V2 RPCs from the ID's shape.
func newSandboxID() string { return "sb-" + strings.ToUpper(randomAlnum(26)) }

func (s *Server) AuthTokenGet(ctx context.Context, req *pb.AuthTokenGetRequest) (*pb.AuthTokenGetResponse, error) {
	tok := newJWT(s.opts.AuthTokenTTL)
	s.mu.Lock()
	s.authJWTs[tok] = true
	s.mu.Unlock()
	return &pb.AuthTokenGetResponse{Token: tok}, nil
}

func (s *Server) AppGetOrCreate(ctx context.Context, req *pb.AppGetOrCreateRequest) (*pb.AppGetOrCreateResponse, error) {
	if req.GetAppName() == "" {
		return nil, status.Error(codes.InvalidArgument, "app name is empty")
	}
	key := req.GetEnvironmentName() + "/" + req.GetAppName()
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.apps[key]
	if !ok {
		if req.GetObjectCreationType() != pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_IF_MISSING {
			return nil, status.Errorf(codes.NotFound, "App '%s' not found", req.GetAppName())
		}
		id = "ap-" + randomAlnum(22)
		s.apps[key] = id
	}
	return &pb.AppGetOrCreateResponse{AppId: id}, nil
}

func (s *Server) EnvironmentGetOrCreate(ctx context.Context, req *pb.EnvironmentGetOrCreateRequest) (*pb.EnvironmentGetOrCreateResponse, error) {
	return &pb.EnvironmentGetOrCreateResponse{
		EnvironmentId: "en-fake",
		Metadata:      &pb.EnvironmentMetadata{Name: "main", Settings: &pb.EnvironmentSettings{ImageBuilderVersion: BuilderVersion}},
	}, nil
}

// ImageGetOrCreate records the image and leaves it "building": the client
// must join the build (ImageJoinStreaming), as with a real registry pull.
func (s *Server) ImageGetOrCreate(ctx context.Context, req *pb.ImageGetOrCreateRequest) (*pb.ImageGetOrCreateResponse, error) {
	cmds := req.GetImage().GetDockerfileCommands()
	if len(cmds) == 0 || !strings.HasPrefix(cmds[0], "FROM ") || strings.TrimSpace(strings.TrimPrefix(cmds[0], "FROM ")) == "" {
		return nil, status.Error(codes.InvalidArgument, "image has no FROM command")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, img := range s.images {
		if strings.Join(img.DockerfileCommands, "\n") == strings.Join(cmds, "\n") {
			return &pb.ImageGetOrCreateResponse{ImageId: id, Result: &pb.GenericResult{Status: pb.GenericResult_GENERIC_STATUS_SUCCESS}}, nil
		}
	}
	id := "im-" + randomAlnum(22)
	s.images[id] = &pb.Image{DockerfileCommands: cmds}
	return &pb.ImageGetOrCreateResponse{ImageId: id}, nil
}

// ImageJoinStreaming reports the build: an entry without a result, then
// the success.
func (s *Server) ImageJoinStreaming(req *pb.ImageJoinStreamingRequest, stream grpc.ServerStreamingServer[pb.ImageJoinStreamingResponse]) error {
	s.mu.Lock()
	_, ok := s.images[req.GetImageId()]
	s.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "image %s not found", req.GetImageId())
	}
	if req.GetLastEntryId() == "" {
		if err := stream.Send(&pb.ImageJoinStreamingResponse{EntryId: "1"}); err != nil {
			return err
		}
	}
	return stream.Send(&pb.ImageJoinStreamingResponse{EntryId: "2", Result: &pb.GenericResult{Status: pb.GenericResult_GENERIC_STATUS_SUCCESS}})
}

func (s *Server) lookup(id string) (*sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.sandboxes[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Sandbox with id %s not found", id)
	}
	return sb, nil
}

func (s *Server) SandboxCreateV2(ctx context.Context, req *pb.SandboxCreateV2Request) (*pb.SandboxCreateV2Response, error) {
	def := req.GetDefinition()
	s.mu.Lock()
	_, imageOK := s.images[def.GetImageId()]
	appOK := false
	for _, id := range s.apps {
		appOK = appOK || id == req.GetAppId()
	}
	s.mu.Unlock()
	switch {
	case !appOK:
		return nil, status.Errorf(codes.NotFound, "App %s not found", req.GetAppId())
	case !imageOK:
		return nil, status.Errorf(codes.NotFound, "Image %s not found", def.GetImageId())
	case def.Workdir != nil && !strings.HasPrefix(def.GetWorkdir(), "/"):
		return nil, status.Error(codes.InvalidArgument, "workdir must be an absolute path")
	}
	timeout := time.Duration(def.GetTimeoutSecs()) * time.Second
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	if timeout > 24*time.Hour {
		return nil, status.Error(codes.InvalidArgument, "timeout must be at most 24 hours")
	}
	env := map[string]string{}
	for _, src := range req.GetSecretSources() {
		for k, v := range src.GetEnv().GetContents() {
			env[k] = v
		}
	}
	id := newSandboxID()
	box, err := s.boxes.CreateID(id, env)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "create sandbox dir: %v", err)
	}
	sb := &sandbox{s: s, box: box, id: id, taskID: "ta-" + randomAlnum(22), appID: req.GetAppId(), imageID: def.GetImageId(),
		tags: req.GetTags(), created: time.Now(), timeout: timeout, wantWorkdir: def.GetWorkdir(),
		routerJWT: newJWT(s.opts.RouterTokenTTL), execs: map[string]*execution{}, done: make(chan struct{})}
	sb.timer = time.AfterFunc(timeout, func() { sb.finish(pb.GenericResult_GENERIC_STATUS_TIMEOUT, "Sandbox timed out") })
	s.register(sb)
	if err := s.createFault(ctx); err != nil {
		return nil, err // the sandbox was made, but its answer is lost
	}
	return &pb.SandboxCreateV2Response{SandboxId: sb.id, TaskId: sb.taskID,
		CommandRouterAccess: &pb.CommandRouterAccess{Jwt: sb.routerJWT, Url: s.routerURL()}}, nil
}

func (s *Server) register(sb *sandbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sandboxes[sb.id] = sb
	s.tasks[sb.taskID] = sb
}

func (s *Server) SandboxGetTaskIdV2(ctx context.Context, req *pb.SandboxGetTaskIdRequest) (*pb.SandboxGetTaskIdResponse, error) {
	sb, err := s.lookup(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	if res := sb.result(); res != nil {
		return &pb.SandboxGetTaskIdResponse{TaskResult: res}, nil
	}
	return &pb.SandboxGetTaskIdResponse{TaskId: &sb.taskID}, nil
}

func (s *Server) SandboxGetCommandRouterAccess(ctx context.Context, req *pb.SandboxGetCommandRouterAccessRequest) (*pb.SandboxGetCommandRouterAccessResponse, error) {
	var sb *sandbox
	var err error
	if tid := req.GetTaskId(); tid != "" {
		s.mu.Lock()
		sb = s.tasks[tid]
		s.mu.Unlock()
		if sb == nil {
			return nil, status.Errorf(codes.NotFound, "task %s not found", tid)
		}
	} else if sb, err = s.lookup(req.GetSandboxId()); err != nil {
		return nil, err
	}
	if sb.result() != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "Sandbox %s has finished", sb.id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &pb.SandboxGetCommandRouterAccessResponse{Jwt: sb.routerJWT, Url: s.routerURL()}, nil
}

func (s *Server) SandboxWaitV2(ctx context.Context, req *pb.SandboxWaitRequest) (*pb.SandboxWaitResponse, error) {
	sb, err := s.lookup(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	if d := time.Duration(float64(req.GetTimeout()) * float64(time.Second)); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-sb.done:
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &pb.SandboxWaitResponse{Result: sb.result()}, nil
}

func (s *Server) SandboxTerminateV2(ctx context.Context, req *pb.SandboxTerminateRequest) (*pb.SandboxTerminateResponse, error) {
	sb, err := s.lookup(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	existing := sb.result()
	sb.finish(pb.GenericResult_GENERIC_STATUS_TERMINATED, "Sandbox terminated")
	return &pb.SandboxTerminateResponse{ExistingResult: existing}, nil
}

func (s *Server) SandboxTagsGetV2(ctx context.Context, req *pb.SandboxTagsGetRequest) (*pb.SandboxTagsGetResponse, error) {
	sb, err := s.lookup(req.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return &pb.SandboxTagsGetResponse{Tags: sb.tags}, nil
}

// listPage is how many sandboxes one SandboxListV2 answer holds, newest
// first; clients page with before_timestamp.
const listPage = 100

func (s *Server) SandboxListV2(ctx context.Context, req *pb.SandboxListRequest) (*pb.SandboxListResponse, error) {
	want := map[string]string{}
	for _, t := range req.GetTags() {
		want[t.GetTagName()] = t.GetTagValue()
	}
	s.mu.Lock()
	var found []*sandbox
	for _, sb := range s.sandboxes {
		found = append(found, sb)
	}
	s.mu.Unlock()
	out := &pb.SandboxListResponse{}
	var match []*pb.SandboxInfo
	for _, sb := range found {
		created := float64(sb.created.UnixNano()) / 1e9
		if req.GetAppId() != "" && sb.appID != req.GetAppId() {
			continue
		}
		if req.GetBeforeTimestamp() != 0 && created >= req.GetBeforeTimestamp() {
			continue
		}
		res := sb.result()
		if res != nil && !req.GetIncludeFinished() {
			continue
		}
		tags := sb.tagMap()
		ok := true
		for k, v := range want {
			ok = ok && tags[k] == v
		}
		if !ok {
			continue
		}
		match = append(match, &pb.SandboxInfo{Id: sb.id, CreatedAt: created, AppId: sb.appID, Tags: sb.tags, ImageId: sb.imageID,
			TimeoutSecs: uint32(sb.timeout / time.Second), TaskInfo: &pb.TaskInfo{Id: sb.taskID, StartedAt: created, Result: res}})
	}
	// Newest first.
	for i := 1; i < len(match); i++ {
		for j := i; j > 0 && match[j].CreatedAt > match[j-1].CreatedAt; j-- {
			match[j], match[j-1] = match[j-1], match[j]
		}
	}
	if len(match) > listPage {
		match = match[:listPage]
	}
	out.Sandboxes = match
	return out, nil
}
