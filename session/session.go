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
	Store  Store
	Logger *slog.Logger
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
	m := &Manager{cfg: cfg, store: cfg.Store, instance: uuid.NewString(), served: map[string]struct{}{}}
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

// Owner is the value of the providers.LabelSession label on the session's
// sandboxes: unique across server processes, so one server's reaper never
// mistakes another's live session for its own.
func (m *Manager) Owner(sessionID string) string {
	return sessionID + "@" + m.instance
}

// Liveness tells a reaper what is known of the owner a LabelSession label
// names: a session the store holds and has not ended is live (whichever
// server started it, when the store is shared); a session of this process
// is otherwise dead; another process's is dead once that process is gone
// (its instance lock is free), and unknown when no lock of it is on this
// machine.
func (m *Manager) Liveness(owner string) providers.Liveness {
	id, instance, ok := strings.Cut(owner, "@")
	if !ok {
		return providers.OwnerUnknown
	}
	if instance == m.instance || m.store.Shared() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		live, err := m.store.Live(ctx, id)
		switch {
		case err != nil:
			return providers.OwnerUnknown // never reap on a store that does not answer
		case live:
			return providers.OwnerLive
		case instance == m.instance:
			return providers.OwnerDead
		}
	}
	return instanceLiveness(m.cfg.InstanceDir, instance)
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

// Create makes a new sandbox owned by the session and makes it current.
func (m *Manager) Create(ctx context.Context, sessionID, provider string, opts providers.CreateOptions) (providers.Sandbox, error) {
	lease, err := m.store.Lock(ctx, sessionID)
	if err != nil {
		return providers.Sandbox{}, err
	}
	defer lease.Release()
	rec, err := m.store.Get(ctx, sessionID)
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
	start := time.Now()
	sb, err := p.Create(ctx, opts)
	if err != nil {
		return providers.Sandbox{}, err
	}
	if rec.Owner == "" {
		rec.Owner = m.Owner(sessionID)
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
	rec, err := m.store.Get(ctx, sessionID)
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
		lease, err := m.store.Lock(ctx, sessionID)
		if err != nil {
			return nil, "", err
		}
		defer lease.Release()
		if rec, err = m.store.Get(ctx, sessionID); err != nil {
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
	rec, err := m.store.Get(ctx, sessionID)
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
	lease, err := m.store.Lock(ctx, sessionID)
	if err != nil {
		return err
	}
	defer lease.Release()
	rec, err := m.store.Get(ctx, sessionID)
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
	rec, err := m.store.Get(ctx, sessionID)
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
	rec, won, err := m.store.End(ctx, sessionID)
	if err != nil {
		m.cfg.Logger.Error("session not ended: the session store failed; its sandboxes go when they expire", "session", sessionID, "err", err)
		return
	}
	if !won {
		return
	}
	for _, h := range rec.Sandboxes {
		if m.cfg.KeepSandboxes {
			m.cfg.Logger.Info("session ended; keeping sandbox", "session", sessionID, "provider", h.Provider, "sandbox", h.ID)
			continue
		}
		p, ok := m.cfg.Providers[h.Provider]
		if !ok {
			m.cfg.Logger.Error("session ended; sandbox on a provider this server does not enable, left to expire", "session", sessionID, "provider", h.Provider, "sandbox", h.ID)
			continue
		}
		destroyed, err := p.Release(ctx, h.ID)
		if err != nil && !errors.Is(err, providers.ErrNotFound) {
			m.cfg.Logger.Error("session ended; sandbox not released", "session", sessionID, "provider", h.Provider, "sandbox", h.ID, "err", err)
			continue
		}
		done := "released"
		if destroyed {
			done = "destroyed"
		}
		m.cfg.Logger.Info("session ended; sandbox "+done, "session", sessionID, "provider", h.Provider, "sandbox", h.ID)
	}
}

// Close ends the sessions this process served (at shutdown) when the store
// is its own, and gives up the instance lock. Sessions in a shared store
// live on: other servers serve them. The store stays open (its opener
// closes it).
func (m *Manager) Close(ctx context.Context) {
	defer func() {
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
