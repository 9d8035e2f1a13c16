package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/cmd/mcp-sandbox/internal/httpguard"
	"github.com/mcp-sandbox/mcp-sandbox/session"
)

// Replicas: HTTP servers sharing a session store (--session-store redis://)
// serve every session, whichever of them the client's requests land on.
//
//   - A session is recorded in the store by the hook that answers its
//     initialize (with the protocol version and client it settled), before
//     the client has its ID, so no replica can be asked about a session the
//     store does not know yet.
//   - replicaGate checks every request that names a session against the
//     store: unknown or ended is 404, a store that does not answer is 503
//     (the session is not lost: retry), a DELETE ends the session for all
//     (its sandboxes destroyed once, by whichever replica wins the store's
//     end), and initialize is refused at --max-sessions and at
//     --max-sessions-per-client counted across all (the idlest session
//     ended instead when one is idle enough).
//   - mcp-go's own session bookkeeping is per process: storeSessionIDs lets
//     every ID the gate let through pass, and a replica that has not seen a
//     session's initialize rebuilds what it settled from the record
//     (rebuildSession).
//   - A session's end in one process (its GET stream closing, mcp-go's idle
//     sweep, shutdown) only drops that process's state: the session lives on
//     in the store, where idle sessions expire by its TTL.

// storeSessionIDs is the SessionIdManager of a replica: the gate in front
// of mcp-go has checked the session against the store, and ending a session
// is the gate's too, so Terminate only lets mcp-go drop its local state.
type storeSessionIDs struct{}

func (storeSessionIDs) Generate() string { return uuid.NewString() }

func (storeSessionIDs) Validate(id string) (bool, error) {
	if id == "" {
		return false, errors.New("missing session ID")
	}
	return false, nil
}

func (storeSessionIDs) Terminate(string) (bool, error) { return false, nil }

type recordKey struct{}

// clientCtxKey carries an initialize request's client (httpguard.ClientKey)
// from the gate to the hook that records the session.
type clientCtxKey struct{}

// replicaGate is the store check in front of mcp-go on a replica.
type replicaGate struct {
	a    *app
	next http.Handler
}

// storeCallTimeout bounds one store round trip on a request's path, so that
// a store that stopped answering gives a clear error, not a hung call.
const storeCallTimeout = 5 * time.Second

func (g replicaGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(server.HeaderKeySessionID)
	ctx, cancel := context.WithTimeout(r.Context(), storeCallTimeout)
	defer cancel()
	if r.Method == http.MethodPost && id == "" && isInitialize(r) {
		if g.a.cfg.MaxSessionsPerClient > 0 { // else nothing counts a client's sessions
			client := httpguard.ClientKey(r)
			if !g.admitClient(ctx, w, client) {
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), clientCtxKey{}, client))
		}
		n, err := g.a.store.Count(ctx)
		if err != nil {
			g.storeDown(w, err)
			return
		}
		if max := g.a.cfg.MaxSessions; max > 0 && n >= max && !g.evict(ctx) {
			w.Header().Set("Retry-After", "10")
			writeRPCErrorStatus(w, http.StatusServiceUnavailable, mcp.INTERNAL_ERROR, fmt.Sprintf(
				"session limit reached: the servers sharing this session store hold %d live sessions, the most --max-sessions (MCP_SANDBOX_MAX_SESSIONS) allows, and none is idle (unused for %v, --session-evict-idle) to make room; end an unused session with HTTP DELETE, or retry later", n, g.a.cfg.SessionEvictIdle))
			return
		}
	}
	if id == "" {
		g.next.ServeHTTP(w, r)
		return
	}
	rec, err := g.a.sessions.Record(ctx, id)
	if err != nil {
		g.storeDown(w, err)
		return
	}
	if !rec.Known() || rec.Ended {
		writeRPCErrorStatus(w, http.StatusNotFound, mcp.INVALID_REQUEST, "unknown or ended session: send initialize to start a new one")
		return
	}
	if r.Method == http.MethodDelete {
		g.a.sessions.End(context.WithoutCancel(r.Context()), id)
	}
	g.next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
}

// evict ends the session of any replica unused for longest, if unused for
// --session-evict-idle, to make room for a new one; false if none is.
func (g replicaGate) evict(ctx context.Context) bool {
	owner, ok, err := g.a.sessions.EndIdlest(context.WithoutCancel(ctx), g.a.cfg.SessionEvictIdle)
	if err != nil || !ok {
		return false
	}
	g.a.log.Warn("ended the longest-idle session to make room for a new one", "owner", owner)
	return true
}

// admitClient applies --max-sessions-per-client across the replicas: a
// client at the cap has its longest-idle session ended for the new one, or,
// when none is idle enough, is refused with 429.
func (g replicaGate) admitClient(ctx context.Context, w http.ResponseWriter, client string) bool {
	per := g.a.cfg.MaxSessionsPerClient
	n, idlest, err := g.a.sessions.ClientSessions(ctx, client, g.a.cfg.SessionEvictIdle)
	switch {
	case err != nil:
		g.storeDown(w, err)
		return false
	case n < per:
		return true
	case idlest != "":
		g.a.log.Warn("ending this client's longest-idle session to make room for its new one", "owner", idlest, "client", client)
		g.a.sessions.EndOwner(context.WithoutCancel(ctx), idlest)
		return true
	}
	w.Header().Set("Retry-After", "10")
	writeRPCErrorStatus(w, http.StatusTooManyRequests, mcp.INTERNAL_ERROR, fmt.Sprintf(
		"too many sessions for this client: %s holds %d live sessions on the servers sharing this session store, the most one client may hold (--max-sessions-per-client, MCP_SANDBOX_MAX_SESSIONS_PER_CLIENT), and none is idle (unused for %v, --session-evict-idle) to make room; end one of its sessions with HTTP DELETE, or retry later", client, n, g.a.cfg.SessionEvictIdle))
	return false
}

// localClientCap is the --max-sessions-per-client the limiter of this
// process enforces: with a shared store, the gate counts across replicas.
func (a *app) localClientCap() int {
	if a.store.Shared() {
		return 0
	}
	return a.cfg.MaxSessionsPerClient
}

// localSessionCap is the --max-sessions the limiter of this process
// enforces: with a shared store, the gate counts the sessions of every
// replica instead (a process sees only some of them).
func (a *app) localSessionCap() int {
	if a.store.Shared() {
		return 0
	}
	return a.cfg.MaxSessions
}

func (g replicaGate) storeDown(w http.ResponseWriter, err error) {
	g.a.log.Warn("session store failed; request refused", "err", err)
	w.Header().Set("Retry-After", "2")
	writeRPCErrorStatus(w, http.StatusServiceUnavailable, mcp.INTERNAL_ERROR, fmt.Sprintf(
		"the session store does not answer (%v); the session is kept: retry in a few seconds", unwrapStore(err)))
}

func unwrapStore(err error) error {
	var se *session.StoreError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

func writeRPCErrorStatus(w http.ResponseWriter, status, code int, message string) {
	body, _ := json.Marshal(mcp.JSONRPCError{JSONRPC: mcp.JSONRPC_VERSION, Error: mcp.NewJSONRPCErrorDetails(code, message, nil)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// isInitialize tells whether r is an initialize request, leaving its body
// to be read again (the guard has already buffered it).
func isInitialize(r *http.Request) bool {
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	var msg struct {
		Method string `json:"method"`
	}
	return json.Unmarshal(body, &msg) == nil && msg.Method == string(mcp.MethodInitialize)
}

// protocolSession is what rebuildSession sets on mcp-go's session.
type protocolSession interface {
	server.SessionWithClientInfo
	ProtocolVersion() string
	SetProtocolVersion(string)
}

// rebuildSession gives a session whose initialize this replica did not
// see (mcp-go serves it with a session made for the request) what that
// initialize settled, from the record the gate read: the negotiated
// protocol version (mcp-go words some errors by it), the client's info and
// capabilities. Every session gets the log level its client last set,
// wherever it set it.
func (a *app) rebuildSession(ctx context.Context, r *http.Request) context.Context {
	ps, ok := server.ClientSessionFromContext(ctx).(protocolSession)
	rec, found := ctx.Value(recordKey{}).(session.Record)
	if !ok || !found {
		return ctx
	}
	level := mcp.LoggingLevel(rec.LogLevel)
	if ps.ProtocolVersion() != "" { // registered here, at its initialize
		if level != "" {
			a.logs.asked(ps.SessionID(), level)
			if sl, ok := ps.(server.SessionWithLogging); ok {
				sl.SetLogLevel(level)
			}
		}
		return ctx
	}
	a.logs.during(ctx, ps, level)
	if rec.Protocol == nil {
		return ctx
	}
	var info mcp.Implementation
	var caps mcp.ClientCapabilities
	json.Unmarshal(rec.Protocol.ClientInfo, &info)
	json.Unmarshal(rec.Protocol.Capabilities, &caps)
	ps.SetClientInfo(info)
	ps.SetClientCapabilities(caps)
	ps.SetProtocolVersion(rec.Protocol.Version)
	return ctx
}

// recordLogLevel is the after-setLevel hook of a replica: the level goes
// into the session's record, for the replicas that serve its next requests.
func (a *app) recordLogLevel(ctx context.Context, _ any, req *mcp.SetLevelRequest, _ *mcp.EmptyResult) {
	cs := server.ClientSessionFromContext(ctx)
	if cs == nil || cs.SessionID() == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCallTimeout)
	defer cancel()
	if err := a.sessions.SetLogLevel(ctx, cs.SessionID(), string(req.Params.Level)); err != nil {
		a.log.Warn("log level not recorded in the session store; other servers send this session's log messages at the level they knew", "session", cs.SessionID(), "err", err)
	}
}

// recordSession is the after-initialize hook of a replica: the session is
// recorded, with what it settled, before its ID reaches the client.
func (a *app) recordSession(ctx context.Context, _ any, req *mcp.InitializeRequest, res *mcp.InitializeResult) {
	cs := server.ClientSessionFromContext(ctx)
	if cs == nil || cs.SessionID() == "" {
		return
	}
	info, _ := json.Marshal(req.Params.ClientInfo)
	caps, _ := json.Marshal(req.Params.Capabilities)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCallTimeout)
	defer cancel()
	client, _ := ctx.Value(clientCtxKey{}).(string)
	err := a.sessions.Start(ctx, cs.SessionID(), session.Protocol{Version: res.ProtocolVersion, ClientInfo: info, Capabilities: caps}, client)
	if err != nil {
		a.log.Error("session not recorded in the session store; other servers will not know it", "session", cs.SessionID(), "err", err)
	}
}

// replicaOptions are the streamable HTTP options of a server sharing its
// session store (none for a store of its own).
func (a *app) replicaOptions() []server.StreamableHTTPOption {
	if !a.store.Shared() {
		return nil
	}
	return []server.StreamableHTTPOption{
		server.WithSessionIdManager(storeSessionIDs{}),
		server.WithHTTPContextFunc(a.rebuildSession),
	}
}

// replicaHandler puts the gate in front of mcp-go on a replica.
func (a *app) replicaHandler(h http.Handler) http.Handler {
	if !a.store.Shared() {
		return h
	}
	return replicaGate{a: a, next: h}
}

// withStoreHealth makes /healthz report the shared session store too: a
// replica whose store does not answer cannot serve, and a load balancer
// should send its clients elsewhere.
func (a *app) withStoreHealth(h http.Handler) http.Handler {
	if !a.store.Shared() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := a.store.Ping(ctx); err != nil {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "session store: %v\n", unwrapStore(err))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// addReplicaHooks records each session at initialize when the store is
// shared, and the log level it sets, and lets the limiter pass sessions other replicas started.
func (a *app) addReplicaHooks(hooks *server.Hooks) {
	if !a.store.Shared() {
		return
	}
	hooks.AddAfterInitialize(a.recordSession)
	hooks.AddAfterSetLevel(a.recordLogLevel)
	a.httpSessions.ShareSessions()
}

// Which providers can serve a session from any replica: those whose
// sandboxes every replica reaches. The hosted ones (e2b, daytona, modal,
// runloop) are reached over their API; docker when every replica talks to
// the same engine (DOCKER_HOST); local only when every replica runs on one
// machine with one state dir, since its sandboxes are this machine's
// processes and directories. That one is checked: the first replica pins
// its machine and state dir in the store, and the others must match.

// checkSharedLocal refuses a local provider in a shared store unless every
// replica shares this machine and state dir.
func (a *app) checkSharedLocal(stateDir string) error {
	if !a.store.Shared() || a.providers["local"] == nil {
		return nil
	}
	if stateDir == "" {
		return errors.New("the local provider with a shared --session-store needs a state dir every replica shares: set --state-dir")
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return err
	}
	here := machineID() + " " + abs
	ctx, cancel := context.WithTimeout(context.Background(), storeDialTimeout)
	defer cancel()
	pinned, err := a.store.Pin(ctx, "local", here)
	if err != nil {
		return fmt.Errorf("session store (--session-store): %w", err)
	}
	if pinned != here {
		return fmt.Errorf("the local provider cannot be shared by these replicas: its sandboxes live on one machine, in one state dir, and the first replica on this session store runs on %q, this one on %q; run every replica on that machine with that --state-dir, use a provider every replica reaches (docker with one engine, or a hosted one), or, if the replicas moved, delete the Redis key mcp-sandbox:pin:local", pinned, here)
	}
	return nil
}

// machineID names this machine: its systemd machine ID and host name (a
// container has a host name of its own, and cannot reach the processes of
// another's local sandboxes).
func machineID() string {
	id, _ := os.ReadFile("/etc/machine-id")
	host, _ := os.Hostname()
	return strings.TrimSpace(string(id)) + "/" + host
}
