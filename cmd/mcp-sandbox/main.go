// Command mcp-sandbox is an MCP server that gives AI agents sandboxes. It
// serves MCP over stdio by default, or streamable HTTP with --http.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/cmd/mcp-sandbox/internal/httpguard"
	"github.com/mcp-sandbox/mcp-sandbox/providers"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/daytona"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/docker"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/e2b"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/modal"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/runloop"
	"github.com/mcp-sandbox/mcp-sandbox/session"
	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

func main() {
	// A local sandbox's PID 1 is this binary in a hidden mode.
	if jail.IsInit(os.Args) {
		os.Exit(jail.Main(os.Args))
	}
	// A closed stderr (or log pipe) must not end the server: with SIGPIPE
	// handled, a write to it fails instead of killing the process. Handled,
	// not ignored: an ignored signal would stay ignored in every command
	// the sandboxes run, and `yes | head` would never end.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main with its inputs passed in; it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, os.LookupEnv, stdout)
	if errors.Is(err, errHelp) || errors.Is(err, errVersion) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "mcp-sandbox:", err)
		return 2
	}
	if err := ensureToken(&cfg); err != nil {
		fmt.Fprintln(stderr, "mcp-sandbox:", err)
		return 1
	}
	logger := newLogger(cfg, stderr)
	for _, w := range unknownSettings(knownSettingNames(), os.Environ(), cfg.dotenv, cfg.envFile) {
		logger.Warn(w)
	}
	// Listen before anything is started, so that a port in use is one
	// start-up error like the others.
	var ln net.Listener
	if cfg.HTTPAddr != "" {
		if ln, err = listen(cfg.HTTPAddr); err != nil {
			fmt.Fprintf(stderr, "mcp-sandbox: cannot listen on %s: %v (choose another address with --http / MCP_SANDBOX_HTTP)\n", cfg.HTTPAddr, err)
			return 1
		}
		defer ln.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	app, err := newApp(cfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, "mcp-sandbox:", err)
		return 1
	}
	defer app.close()
	go app.reapLoop(ctx, reapInterval)

	if cfg.HTTPAddr != "" {
		err = app.serveHTTP(ctx, ln, stderr)
	} else {
		err = app.serveStdio(ctx, stdin, stdout)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("server stopped", "err", err)
		return 1
	}
	return 0
}

// newLogger writes to stderr only: in stdio mode stdout carries the protocol.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.LogLevel}))
	}
	return slog.New(tint.NewHandler(w, &tint.Options{Level: cfg.LogLevel, TimeFormat: time.TimeOnly, NoColor: !isTerminal(w)}))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// app is the wired server: providers, session manager and MCP server.
type app struct {
	cfg       Config
	log       *slog.Logger
	mcp       *server.MCPServer
	sessions  *session.Manager
	store     session.Store
	providers map[string]*providers.Backend
	// httpSessions counts live MCP sessions for the HTTP session cap.
	httpSessions *httpguard.SessionLimiter
	// calls knows the tool calls in flight, for the shutdown log.
	calls callTracker
	// logs sends each session's log records to its client.
	logs *sessionLogs
}

const instructions = `mcp-sandbox runs shell commands and edits files in sandboxes.
Start with run_command: a sandbox is created on first use and reused by later calls that omit sandbox_id.
Use write_file / edit_file / read_file / list_files for files; paths are relative to the sandbox workdir.
Use sandbox_create only to pick a provider or image, or to work in several sandboxes at once.
Sandboxes belong to this session and are destroyed when it ends.`

// serverInstructions are the instructions with what confines each enabled
// provider's sandboxes, so that the model knows what it may run there.
func (a *app) serverInstructions() string {
	var b strings.Builder
	b.WriteString(instructions)
	names := append([]string{a.cfg.Provider}, a.cfg.ExtraProviders...)
	for i, name := range names {
		if i == 0 {
			b.WriteString("\nProviders (the first is the default):")
		}
		p := a.providers[name]
		if p == nil {
			continue
		}
		iso, ok := p.Isolation()
		if !ok {
			fmt.Fprintf(&b, "\n- %s: isolation not reported", name)
			continue
		}
		fmt.Fprintf(&b, "\n- %s: isolation %s, network %s", name, iso.Level, iso.Network)
		if iso.Limits != "" {
			fmt.Fprintf(&b, ", limits %s", iso.Limits)
		}
		if iso.Level == "none" {
			b.WriteString(" (NOT a sandbox: commands run as the server's user on its machine)")
		}
	}
	return b.String()
}

func newApp(cfg Config, logger *slog.Logger) (*app, error) {
	logs := newSessionLogs(logger.Handler()) // a session's records also go to its client
	logger = slog.New(logs)
	a := &app{cfg: cfg, log: logger, logs: logs, providers: map[string]*providers.Backend{}}
	for _, name := range append([]string{cfg.Provider}, cfg.ExtraProviders...) {
		p, err := providers.Open(context.Background(), name, providers.Config{
			Getenv: cfg.Getenv, Source: cfg.Source, ServerID: cfg.ServerID, Logger: logger.With("provider", name),
		})
		if err != nil {
			a.close()
			setting := "--provider / MCP_SANDBOX_PROVIDER"
			if name != cfg.Provider {
				setting = "--providers / MCP_SANDBOX_PROVIDERS"
			}
			return nil, fmt.Errorf("provider %q (%s): %w", name, setting, err)
		}
		a.providers[name] = p
	}
	stateDir := cfg.Getenv(local.EnvStateDir)
	if stateDir == "" {
		stateDir, _ = local.DefaultStateDir(cfg.Getenv) // none: liveness is unknown, sandboxes go by expiry
	}
	store, err := openStore(cfg, stateDir)
	if err != nil {
		a.close()
		return nil, err
	}
	a.store = store
	if err := a.checkSharedLocal(stateDir); err != nil {
		a.close()
		return nil, err
	}
	mgr, err := session.New(session.Config{
		Providers: a.providers, Default: cfg.Provider, ServerID: cfg.ServerID,
		KeepSandboxes: cfg.KeepSandboxes, MaxSandboxes: cfg.MaxSandboxes, Logger: logger,
		InstanceDir: instanceDir(stateDir), Store: a.store,
	})
	if err != nil {
		a.close()
		return nil, err
	}
	a.sessions = mgr

	hooks := &server.Hooks{}
	a.httpSessions = httpguard.NewSessionLimiter(a.localSessionCap(), a.localClientCap(), cfg.SessionEvictIdle)
	a.httpSessions.AddHooks(hooks)
	a.calls.addHooks(hooks)
	a.addReplicaHooks(hooks)
	hooks.AddOnRegisterSession(func(ctx context.Context, s server.ClientSession) {
		logger.Debug("session started", "session", s.SessionID())
	})
	hooks.AddOnUnregisterSession(func(ctx context.Context, s server.ClientSession) {
		// Sessions end on DELETE, idle expiry, stdio EOF and shutdown; the
		// request's ctx may already be done, so cleanup gets its own.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		a.endSession(ctx, s.SessionID())
	})
	opts := []server.ServerOption{
		server.WithToolCapabilities(false),
		server.WithInstructions(a.serverInstructions()),
		server.WithHooks(hooks),
		server.WithRecovery(),
		server.WithLogging(),
	}
	if cfg.LogLevel <= slog.LevelDebug {
		opts = append(opts, server.WithLogger(logger)) // one line per request
	}
	if cfg.ConformanceFixtures {
		if conformanceFixtures == nil {
			a.close()
			return nil, errors.New("--conformance-fixtures: this build has no conformance fixtures (they are built only with -tags conformance, for testing)")
		}
		opts = append(opts, conformanceFixtures.options()...)
	}
	a.mcp = server.NewMCPServer("mcp-sandbox", version, opts...)
	logs.serve(a.mcp, hooks)
	tools.Register(a.mcp, mgr, cfg.Limits)
	if cfg.ConformanceFixtures {
		conformanceFixtures.register(a.mcp)
		logger.Warn("serving the conformance suite's test tools, resources and prompts (--conformance-fixtures); do not use in production")
	}
	return a, nil
}

// reapInterval is how often sandboxes left behind by ended or crashed
// servers are looked for.
const reapInterval = 5 * time.Minute

// instanceDir is where servers sharing a state dir hold their liveness
// locks (session.Config.InstanceDir).
func instanceDir(stateDir string) string {
	if stateDir == "" {
		return ""
	}
	return filepath.Join(stateDir, "instances")
}

// reapLoop removes, on every provider that can outlive this process, the
// sandboxes of sessions and servers that are gone and those expired whose
// owner is not live: at start-up (what a crashed predecessor left) and then
// on a timer, while this server holds the store's reaper lease (replicas
// take turns).
func (a *app) reapLoop(ctx context.Context, every time.Duration) {
	for {
		a.sessions.Reap(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// closeTimeout bounds ending the sessions and releasing the providers at
// exit: a driver stuck past it is left to the process's end.
const closeTimeout = time.Minute

// close ends every session (destroying their sandboxes unless kept) and
// releases the providers, within closeTimeout.
func (a *app) close() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if a.sessions != nil {
			a.sessions.Close(ctx)
		}
		for _, p := range a.providers {
			p.Close()
		}
		if a.store != nil {
			a.store.Close()
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		a.log.Error("ending the sessions did not finish in time; exiting anyway", "timeout", closeTimeout)
	}
}

// httpHandler serves MCP at /mcp and liveness at /healthz, behind the guard
// (Origin, bearer token, body and session caps). The returned streamable
// server must be shut down to end its sessions.
func (a *app) httpHandler() (http.Handler, *server.StreamableHTTPServer, *httpguard.Guard) {
	h := server.NewStreamableHTTPServer(a.mcp, append([]server.StreamableHTTPOption{
		server.WithStateful(true), // unknown and deleted session IDs get 404
		server.WithSessionIdleTTL(a.cfg.SessionIdleTimeout),
		// The 2026-07-28 revision has no sessions; sandboxes are per session.
		server.WithStreamableHTTPProtocolVersions(mcp.LegacyProtocolVersions()...),
		server.WithStreamableHTTPLogger(a.log),
	}, a.replicaOptions()...)...)
	mux := http.NewServeMux()
	mux.Handle("/mcp", a.replicaHandler(h))
	guard := httpguard.New(httpguard.Config{
		Token:        a.cfg.AuthToken,
		Origins:      a.cfg.AllowedOrigins,
		MaxBodyBytes: a.cfg.MaxBodyBytes,
		Sessions:     a.httpSessions,
		Logger:       a.log,
	})
	return a.withStoreHealth(guard.Handler(mux)), h, guard
}

func (a *app) serveHTTP(ctx context.Context, ln net.Listener, stderr io.Writer) error {
	handler, mcpHTTP, guard := a.httpHandler()
	srv := httpguard.NewServer(handler)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	url, socket := "http://"+ln.Addr().String()+"/mcp", ""
	if ln.Addr().Network() == "unix" {
		url, socket = "http://localhost/mcp", ln.Addr().String()
	}
	a.log.Info("serving MCP over streamable HTTP", "url", url, "socket", socket, "provider", a.cfg.Provider, "version", version,
		"auth", a.cfg.AuthToken != "", "max_sessions", a.cfg.MaxSessions, "max_sessions_per_client", a.cfg.MaxSessionsPerClient, "max_body_bytes", a.cfg.MaxBodyBytes)
	a.announceAuth(stderr, url, socket)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Refuse new requests and end GET streams, wait for in-flight tool
	// calls, and only then end the sessions (their sandboxes go with them).
	err := httpguard.Shutdown(sctx, guard, srv, mcpHTTP, shutdownGrace)
	if calls := a.calls.list(); len(calls) > 0 {
		a.log.Error("tool calls did not end before shutdown; abandoning them", "calls", calls)
	}
	return err
}

// listen opens a TCP address or, for unix:/path, a Unix socket that only
// this user may connect to: it is created under a umask that leaves others
// no access, so there is no moment when it is open to them.
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, errors.New("another server is serving this socket")
		}
		os.Remove(path) // left by a server that died
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// announceAuth tells the operator how clients authenticate: the generated
// token's file and a client line to paste (the token itself stays out of
// logs), or a warning that --auth none lets every local user in.
func (a *app) announceAuth(stderr io.Writer, url, socket string) {
	switch {
	case a.cfg.AuthNone && socket == "":
		a.log.Warn("serving HTTP without a token (--auth none): every user and program on this machine can run commands in your sandboxes")
	case a.cfg.AuthNone:
		a.log.Warn("serving the Unix socket without a token (--auth none): any program running as this user can run commands in your sandboxes")
	case a.cfg.TokenFile != "":
		header := fmt.Sprintf(`"Authorization: Bearer $(cat %s)"`, a.cfg.TokenFile)
		line := fmt.Sprintf("claude mcp add --transport http sandbox %s --header %s", url, header)
		if socket != "" {
			line = fmt.Sprintf("curl --unix-socket %s -H %s %s", socket, header, url)
		}
		if a.cfg.LogJSON {
			a.log.Info("HTTP clients must send the generated token", "token_file", a.cfg.TokenFile, "client_config", line)
			return
		}
		fmt.Fprintf(stderr, "HTTP clients must send \"Authorization: Bearer <token>\" with the token in %s (readable by this user only; remove it to get a new one). For example:\n  %s\n", a.cfg.TokenFile, line)
	}
}

// slogWriter forwards mcp-go's stdlib-log errors to slog.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Error(string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
