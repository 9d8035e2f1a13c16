// Package session keeps each MCP session's sandbox handles: which sandboxes a
// session owns, which one is its current sandbox, and what to destroy when
// the session ends. A session sees and touches only its own sandboxes;
// another session's sandbox ID reads as "not found", never "forbidden".
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// LabelServer is put on every sandbox beside providers.LabelSession, so
// sandboxes on a shared backend can be told apart by server.
const LabelServer = "server"

// Errors the manager returns, for callers to word (the manager knows
// nothing of the tools that reach it). Each also matches the providers
// error kind that fits it.
var (
	// ErrLimit: the session already holds as many sandboxes as allowed.
	ErrLimit = errors.New("sandbox limit reached")
	// ErrEnded: the session has ended; nothing more is done for it.
	ErrEnded = errors.New("session has ended")
	// ErrUnknownSandbox: the session owns no sandbox by that ID (another
	// session's reads the same, so its existence is never confirmed).
	ErrUnknownSandbox = errors.New("no such sandbox in this session")
)

// refusal is one of the errors above, with a message that says which
// sandbox or limit it is about.
type refusal struct {
	reason, kind error
	msg          string
}

func (r refusal) Error() string { return r.msg }

// sandboxes counts in words: "1 sandbox", "2 sandboxes".
func sandboxes(n int) string {
	if n == 1 {
		return "1 sandbox"
	}
	return fmt.Sprintf("%d sandboxes", n)
}

// Is matches both the reason (ErrLimit, ...) and the providers kind.
func (r refusal) Is(target error) bool { return target == r.reason || target == r.kind }

// Handle names one sandbox: the provider that holds it and its ID there.
type Handle struct {
	Provider string `json:"provider"`
	ID       string `json:"id"`
}

// Config sets up a Manager.
type Config struct {
	// Providers are the backends sessions may use, by name.
	Providers map[string]*providers.Backend
	// Default is the provider used when a call names none.
	Default string
	// ServerID labels every sandbox this server creates.
	ServerID string
	// KeepSandboxes leaves sandboxes running when their session ends; they
	// are labelled providers.LabelKeep, so reapers wait for their expiry.
	KeepSandboxes bool
	// InstanceDir, when set, is where server processes on this machine hold
	// a lock while they run, so each can tell whether the server owning a
	// sandbox is gone (see Liveness). Servers sharing a machine should
	// share it (the state dir's "instances").
	InstanceDir string
	// MaxSandboxes caps the sandboxes one session may hold (0: no cap).
	MaxSandboxes int
	// Store keeps the sessions' records (nil: a MemoryStore without expiry).
	Store Store
	// ReapLease is how long the reaper's lease in a shared store outlives a
	// server that stopped renewing it (0: DefaultReapLease).
	ReapLease time.Duration
	Logger    *slog.Logger
}

// Manager tracks sessions and their sandboxes, in its Store. It is safe
// for concurrent use, and Managers sharing a Store may serve one session.
type Manager struct {
	cfg      Config
	store    Store
	instance string   // tells this process's sessions from others' ("stdio" is everyone's)
	lock     *os.File // held while this process runs (Config.InstanceDir)
	mu       sync.Mutex
	served   map[string]struct{} // sessions this process served, to end at Close
	reapMu   sync.Mutex          // held while reaping, so one sweep at a time here
	reaper   Hold                // the store's reaper lease, while this process holds it
	ownerKey []byte              // keys the owner hashes (see owner.go)
}

// New returns a Manager. The default provider must be among cfg.Providers.
func New(cfg Config) (*Manager, error) {
	if _, ok := cfg.Providers[cfg.Default]; !ok {
		return nil, fmt.Errorf("default provider %q is not configured", cfg.Default)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore(0)
	}
	if cfg.ReapLease <= 0 {
		cfg.ReapLease = DefaultReapLease
	}
	key, err := loadOwnerKey(cfg.Store)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, store: cfg.Store, instance: uuid.NewString(), served: map[string]struct{}{}, ownerKey: key}
	if cfg.InstanceDir != "" {
		lock, err := lockInstance(cfg.InstanceDir, m.instance)
		if err != nil {
			// Other servers will not know whether this one runs, and wait
			// for its sandboxes' expiry: worse reaping, not a reason to stop.
			cfg.Logger.Warn("servers on this machine cannot tell whether this one runs", "err", err)
		}
		m.lock = lock
		pruneInstances(cfg.InstanceDir, time.Now())
	}
	return m, nil
}

// Store is where the manager keeps its sessions.
func (m *Manager) Store() Store { return m.store }

// key is what the store and the labels know the session by: its owner
// hash, never its ID.
func (m *Manager) key(sessionID string) string { return ownerHash(m.ownerKey, sessionID) }

// Owner is the value of the providers.LabelSession label on the session's
// sandboxes: the session's owner hash (a sandbox can read its labels; the
// session ID would let it act as the session) and this server process,
// unique across processes, so one server's reaper never mistakes another's
// live session for its own.
func (m *Manager) Owner(sessionID string) string {
	return m.key(sessionID) + "@" + m.instance
}

// Liveness tells a reaper what is known of the owner a LabelSession label
// names: a session the store holds and has not ended is live (whichever
// server started it, when the store is shared); otherwise a session of
// this process, or of any server sharing the store (which records every
// session from its start), is dead; another process's is dead once that
// process is gone (its instance lock is free), and unknown when no lock of
// it is on this machine. Labels of older servers, which named the session
// ID itself, are understood too.
func (m *Manager) Liveness(owner string) providers.Liveness {
	name, instance, ok := strings.Cut(owner, "@")
	if !ok {
		return providers.OwnerUnknown
	}
	if instance == m.instance || m.store.Shared() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		live, err := m.ownerLive(ctx, name)
		switch {
		case err != nil:
			return providers.OwnerUnknown // never reap on a store that does not answer
		case live:
			return providers.OwnerLive
		case instance == m.instance || m.store.Shared():
			return providers.OwnerDead
		}
	}
	return instanceLiveness(m.cfg.InstanceDir, instance)
}

// ownerLive asks the store about the session a label names: by its owner
// hash, or, for an older server's label, by the session ID it carries
// (recorded under that ID by an older replica sharing the store, or under
// its hash since).
func (m *Manager) ownerLive(ctx context.Context, name string) (bool, error) {
	if isOwnerHash(name) {
		return m.store.Live(ctx, name)
	}
	if live, err := m.store.Live(ctx, m.key(name)); err != nil || live {
		return live, err
	}
	return m.store.Live(ctx, name)
}

// Record returns the session's record, counting as a use of it.
func (m *Manager) Record(ctx context.Context, sessionID string) (Record, error) {
	return m.store.Get(ctx, m.key(sessionID))
}

// ProviderNames lists the providers a session may choose from, sorted.
func (m *Manager) ProviderNames() []string {
	names := make([]string, 0, len(m.cfg.Providers))
	for n := range m.cfg.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Logger is where the manager logs; tools log through it too.
func (m *Manager) Logger() *slog.Logger { return m.cfg.Logger }

// DefaultProvider is the provider used when a call names none.
func (m *Manager) DefaultProvider() string { return m.cfg.Default }

func (m *Manager) serve(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.served[id] = struct{}{}
}

// Provider returns a configured provider by name ("" for the default).
func (m *Manager) Provider(name string) (*providers.Backend, error) {
	if name == "" {
		name = m.cfg.Default
	}
	p, ok := m.cfg.Providers[name]
	if !ok {
		return nil, providers.Errorf(providers.ErrInvalidArgument,
			"provider %q is not enabled on this server; choose one of: %s", name, strings.Join(m.ProviderNames(), ", "))
	}
	return p, nil
}

// Start records a session as it starts, with what its initialize settled
// and the client that sent it ("" for none), so that every server sharing
// the store knows it from then on (and can serve it: see Record.Protocol),
// not only from its first sandbox, and counts it among the client's.
func (m *Manager) Start(ctx context.Context, sessionID string, p Protocol, client string) error {
	return m.update(ctx, sessionID, func(rec *Record) {
		rec.Protocol = &p
		if client != "" {
			rec.Client = m.clientKey(client)
		}
		m.serve(sessionID)
	})
}

// SetLogLevel records the level the session asked for (logging/setLevel),
// for every server sharing the store to send its log messages at.
func (m *Manager) SetLogLevel(ctx context.Context, sessionID, level string) error {
	return m.update(ctx, sessionID, func(rec *Record) { rec.LogLevel = level })
}

// update changes a session's record under its lease; an ended session's
// is refused.
func (m *Manager) update(ctx context.Context, sessionID string, change func(*Record)) error {
	lease, err := m.store.Lock(ctx, m.key(sessionID))
	if err != nil {
		return err
	}
	defer lease.Release()
	rec, err := m.store.Get(ctx, m.key(sessionID))
	if err != nil {
		return err
	}
	if rec.Ended {
		return errEnded
	}
	if rec.Owner == "" {
		rec.Owner = m.Owner(sessionID)
	}
	change(&rec)
	return lease.Put(ctx, rec)
}

// clientKey is what the store knows a client by: its address and name
// stay out of it.
func (m *Manager) clientKey(client string) string { return ownerHash(m.ownerKey, "client\x00"+client) }

// ClientSessions counts the live sessions client started (Start), on every
// server sharing the store, and names the one unused for longest if unused
// for at least idle ("" when none is), for EndOwner to make room.
func (m *Manager) ClientSessions(ctx context.Context, client string, idle time.Duration) (n int, idlest string, err error) {
	n, idlest, _, err = m.store.ClientSessions(ctx, m.clientKey(client), idle)
	return n, idlest, err
}

// EndOwner ends the session whose owner hash (the part of Owner before
// the "@") is owner, as End does.
func (m *Manager) EndOwner(ctx context.Context, owner string) {
	m.end(ctx, owner, slog.String("owner", owner))
}

// Create makes a new sandbox owned by the session and makes it current.
func (m *Manager) Create(ctx context.Context, sessionID, provider string, opts providers.CreateOptions) (providers.Sandbox, error) {
	lease, err := m.store.Lock(ctx, m.key(sessionID))
	if err != nil {
		return providers.Sandbox{}, err
	}
	defer lease.Release()
	rec, err := m.store.Get(ctx, m.key(sessionID))
	if err != nil {
		return providers.Sandbox{}, err
	}
	return m.create(ctx, lease, rec, sessionID, provider, opts)
}

var errEnded = refusal{ErrEnded, providers.ErrNotFound, "this session has ended"}

// create makes a sandbox for the session whose record rec was read under
// lease, and saves it as the current one.
func (m *Manager) create(ctx context.Context, lease Lease, rec Record, sessionID, provider string, opts providers.CreateOptions) (providers.Sandbox, error) {
	if rec.Ended {
		return providers.Sandbox{}, errEnded
	}
	p, err := m.Provider(provider)
	if err != nil {
		return providers.Sandbox{}, err
	}
	if m.cfg.MaxSandboxes > 0 && len(rec.Sandboxes) >= m.cfg.MaxSandboxes {
		return providers.Sandbox{}, refusal{ErrLimit, providers.ErrInvalidArgument,
			fmt.Sprintf("this session already holds %s, the limit per session", sandboxes(len(rec.Sandboxes)))}
	}
	labels := map[string]string{}
	for k, v := range opts.Labels {
		labels[k] = v
	}
	labels[LabelServer] = m.cfg.ServerID
	labels[providers.LabelSession] = m.Owner(sessionID)
	if m.cfg.KeepSandboxes {
		labels[providers.LabelKeep] = "true"
	}
	opts.Labels = labels
	if rec.Owner == "" {
		// Recorded before the sandbox exists: a reaper that finds it while
		// it is being made must see its owner live, not a session it never
		// heard of (a stdio session is first recorded here).
		rec.Owner = m.Owner(sessionID)
		m.serve(sessionID)
		if err := lease.Put(ctx, rec); err != nil {
			return providers.Sandbox{}, err
		}
	}
	start := time.Now()
	sb, err := p.Create(ctx, opts)
	if err != nil {
		return providers.Sandbox{}, err
	}
	rec.Sandboxes = append(rec.Sandboxes, Handle{Provider: p.Name(), ID: sb.ID})
	rec.Current = sb.ID
	m.serve(sessionID)
	if err := lease.Put(ctx, rec); err != nil {
		// No session can reach the sandbox: the session ended meanwhile, or
		// the store did not take it. It goes now rather than at its expiry.
		m.destroyUnsaved(ctx, sessionID, p, sb.ID, err)
		if errors.Is(err, ErrEnded) {
			return providers.Sandbox{}, errEnded
		}
		return providers.Sandbox{}, err
	}
	m.cfg.Logger.Info("sandbox created", "session", sessionID, "provider", p.Name(), "sandbox", sb.ID, "duration", time.Since(start))
	return sb, nil
}

func (m *Manager) destroyUnsaved(ctx context.Context, sessionID string, p *providers.Backend, id string, why error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := p.Destroy(ctx, id); err != nil && !errors.Is(err, providers.ErrNotFound) {
		m.cfg.Logger.Error("sandbox not saved to its session, and not destroyed", "session", sessionID, "provider", p.Name(), "sandbox", id, "why", why, "err", err)
		return
	}
	m.cfg.Logger.Warn("sandbox not saved to its session; destroyed", "session", sessionID, "provider", p.Name(), "sandbox", id, "why", why)
}

// Resolve finds the sandbox a call means: sandboxID if the session owns it,
// else (when sandboxID is empty) the session's current sandbox, created on
// first use with the default provider.
func (m *Manager) Resolve(ctx context.Context, sessionID, sandboxID string) (*providers.Backend, string, error) {
	rec, err := m.store.Get(ctx, m.key(sessionID))
	if err != nil {
		return nil, "", err
	}
	if rec.Ended {
		return nil, "", errEnded
	}
	m.serve(sessionID)
	if sandboxID == "" && rec.Current == "" {
		// First use: under the lease, so that of all the calls racing here
		// (on any server) one creates and the others see its sandbox.
		lease, err := m.store.Lock(ctx, m.key(sessionID))
		if err != nil {
			return nil, "", err
		}
		defer lease.Release()
		if rec, err = m.store.Get(ctx, m.key(sessionID)); err != nil {
			return nil, "", err
		}
		if rec.Current == "" {
			sb, err := m.create(ctx, lease, rec, sessionID, "", providers.CreateOptions{})
			if err != nil {
				return nil, "", err
			}
			return m.cfg.Providers[m.cfg.Default], sb.ID, nil
		}
	}
	if sandboxID == "" {
		sandboxID = rec.Current
	}
	h, ok := rec.find(sandboxID)
	if !ok {
		return nil, "", notFound(sandboxID)
	}
	p, ok := m.cfg.Providers[h.Provider]
	if !ok {
		return nil, "", providers.Errorf(providers.ErrInvalidArgument,
			"sandbox %q is on provider %q, which this server does not enable; enable it with --providers", sandboxID, h.Provider)
	}
	return p, h.ID, nil
}

func notFound(id string) error {
	return refusal{ErrUnknownSandbox, providers.ErrNotFound, fmt.Sprintf("sandbox %q not found in this session", id)}
}

// List describes the session's sandboxes, oldest first, and names the current one.
func (m *Manager) List(ctx context.Context, sessionID string) ([]providers.Sandbox, string, error) {
	rec, err := m.store.Get(ctx, m.key(sessionID))
	if err != nil {
		return nil, "", err
	}
	out := make([]providers.Sandbox, 0, len(rec.Sandboxes))
	current := rec.Current
	for _, h := range rec.Sandboxes {
		p, ok := m.cfg.Providers[h.Provider]
		if !ok {
			continue // on a provider this server does not enable
		}
		sb, err := p.Get(ctx, h.ID)
		if errors.Is(err, providers.ErrNotFound) {
			m.forget(ctx, sessionID, h.ID) // gone behind our back (expired, removed by hand)
			if current == h.ID {
				current = ""
			}
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, sb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, current, nil
}

// forget drops a sandbox from the session's record.
func (m *Manager) forget(ctx context.Context, sessionID, id string) error {
	lease, err := m.store.Lock(ctx, m.key(sessionID))
	if err != nil {
		return err
	}
	defer lease.Release()
	rec, err := m.store.Get(ctx, m.key(sessionID))
	if err != nil {
		return err
	}
	if _, ok := rec.find(id); !ok {
		return nil
	}
	rec.forget(id)
	return lease.Put(ctx, rec)
}

// Destroy destroys one of the session's sandboxes.
func (m *Manager) Destroy(ctx context.Context, sessionID, sandboxID string) error {
	rec, err := m.store.Get(ctx, m.key(sessionID))
	if err != nil {
		return err
	}
	h, ok := rec.find(sandboxID)
	if !ok {
		return notFound(sandboxID)
	}
	p, ok := m.cfg.Providers[h.Provider]
	if !ok {
		return providers.Errorf(providers.ErrInvalidArgument,
			"sandbox %q is on provider %q, which this server does not enable; enable it with --providers", sandboxID, h.Provider)
	}
	err = p.Destroy(ctx, h.ID)
	if err != nil && !errors.Is(err, providers.ErrNotFound) {
		return err
	}
	if err := m.forget(ctx, sessionID, sandboxID); err != nil && !errors.Is(err, ErrEnded) {
		return err
	}
	m.cfg.Logger.Info("sandbox destroyed", "session", sessionID, "provider", h.Provider, "sandbox", h.ID)
	return nil
}

// End ends a session; its sandboxes are released (destroyed, unless the
// driver is a providers.Releaser that decides otherwise) unless the manager
// keeps them. Of all the calls ending one session, on any server sharing
// the store, only the first releases; it is safe for unknown sessions and
// to call more than once.
func (m *Manager) End(ctx context.Context, sessionID string) {
	m.mu.Lock()
	delete(m.served, sessionID)
	m.mu.Unlock()
	m.end(ctx, m.key(sessionID), slog.String("session", sessionID))
}

// EndIdlest ends the live session, of any server sharing the store, unused
// for longest, if unused for at least idle: room for a new one at a session
// cap. It returns the ended session's owner hash, ok false when none was
// idle enough.
func (m *Manager) EndIdlest(ctx context.Context, idle time.Duration) (owner string, ok bool, err error) {
	key, ok, err := m.store.Idlest(ctx, idle)
	if err != nil || !ok {
		return "", false, err
	}
	m.EndOwner(ctx, key)
	return key, true, nil
}

// end ends the session the store knows by key; who names it in the log.
func (m *Manager) end(ctx context.Context, key string, who slog.Attr) {
	rec, won, err := m.store.End(ctx, key)
	if err != nil {
		m.cfg.Logger.Error("session not ended: the session store failed; its sandboxes go when they expire", who, "err", err)
		return
	}
	if !won {
		return
	}
	for _, h := range rec.Sandboxes {
		if m.cfg.KeepSandboxes {
			m.cfg.Logger.Info("session ended; keeping sandbox", who, "provider", h.Provider, "sandbox", h.ID)
			continue
		}
		p, ok := m.cfg.Providers[h.Provider]
		if !ok {
			m.cfg.Logger.Error("session ended; sandbox on a provider this server does not enable, left to expire", who, "provider", h.Provider, "sandbox", h.ID)
			continue
		}
		destroyed, err := p.Release(ctx, h.ID)
		if err != nil && !errors.Is(err, providers.ErrNotFound) {
			m.cfg.Logger.Error("session ended; sandbox not released", who, "provider", h.Provider, "sandbox", h.ID, "err", err)
			continue
		}
		done := "released"
		if destroyed {
			done = "destroyed"
		}
		m.cfg.Logger.Info("session ended; sandbox "+done, who, "provider", h.Provider, "sandbox", h.ID)
	}
}

// Detach lets go of a session without ending it: its record and sandboxes
// stay in the store for another server to serve (a named stdio session
// whose server stops with --keep-sandboxes), and Close leaves it alone.
func (m *Manager) Detach(sessionID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.served, sessionID)
}

// Close ends the sessions this process served (at shutdown) when the store
// is its own, and gives up the instance lock. Sessions in a shared store
// live on: other servers serve them. The store stays open (its opener
// closes it).
func (m *Manager) Close(ctx context.Context) {
	defer func() {
		m.reapMu.Lock()
		if m.reaper != nil {
			m.reaper.Release() // for another server to take at once
			m.reaper = nil
		}
		m.reapMu.Unlock()
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.lock != nil {
			unlockInstance(m.lock)
			m.lock = nil
		}
	}()
	if !m.store.Shared() {
		m.mu.Lock()
		ids := make([]string, 0, len(m.served))
		for id := range m.served {
			ids = append(ids, id)
		}
		m.mu.Unlock()
		for _, id := range ids {
			m.End(ctx, id)
		}
	}
}

// DefaultReapLease is how long a server that stopped (crashed, or cut off
// from the store) keeps the other servers sharing its store from reaping.
const DefaultReapLease = time.Minute

// reaperHold names the store-wide lease of the server that reaps.
const reaperHold = "reaper"

// Reap removes, on every provider whose sandboxes can outlive a server, the
// sandboxes of sessions that are gone and the expired ones whose owner is
// not live (see Liveness). Servers sharing a store take turns: only the
// holder of the store's reaper lease sweeps, and it keeps the lease, renewed,
// until it stops; swept is false when another server holds it.
func (m *Manager) Reap(ctx context.Context) (swept bool) {
	m.reapMu.Lock()
	defer m.reapMu.Unlock()
	if !m.holdReaper(ctx) {
		return false
	}
	for _, name := range m.ProviderNames() {
		removed, err := m.cfg.Providers[name].Reap(ctx, m.Liveness)
		if err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("reaping sandboxes left behind failed", "provider", name, "err", err)
		} else if len(removed) > 0 {
			m.cfg.Logger.Info("reaped sandboxes", "provider", name, "count", len(removed))
		}
	}
	return true
}

// holdReaper tells whether this server holds the reaper lease, taking it
// if it is free; m.reapMu is held.
func (m *Manager) holdReaper(ctx context.Context) bool {
	if m.reaper != nil && m.reaper.Held() {
		return true
	}
	if m.reaper != nil {
		m.reaper.Release() // lost: another server may hold it now
		m.reaper = nil
	}
	h, err := m.store.TryHold(ctx, reaperHold, m.cfg.ReapLease)
	if err != nil {
		m.cfg.Logger.Warn("not reaping: the session store does not answer", "err", err)
		return false
	}
	m.reaper = h
	return h != nil
}
