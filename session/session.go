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
	Provider string
	ID       string
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
	Logger       *slog.Logger
}

// Manager tracks sessions and their sandboxes. It is safe for concurrent use.
type Manager struct {
	cfg      Config
	instance string   // tells this process's sessions from others' ("stdio" is everyone's)
	lock     *os.File // held while this process runs (Config.InstanceDir)
	mu       sync.Mutex
	sessions map[string]*state
}

type state struct {
	mu        sync.Mutex // serialises create-on-first-use and destroy
	sandboxes map[string]Handle
	current   string
	ended     bool // set by End; a call racing with the end creates nothing
}

// New returns a Manager. The default provider must be among cfg.Providers.
func New(cfg Config) (*Manager, error) {
	if _, ok := cfg.Providers[cfg.Default]; !ok {
		return nil, fmt.Errorf("default provider %q is not configured", cfg.Default)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, instance: uuid.NewString(), sessions: map[string]*state{}}
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

// Owner is the value of the providers.LabelSession label on the session's
// sandboxes: unique across server processes, so one server's reaper never
// mistakes another's live session for its own.
func (m *Manager) Owner(sessionID string) string {
	return sessionID + "@" + m.instance
}

// Liveness tells a reaper what is known of the owner a LabelSession label
// names: a session of this process is live until it ends; another process's
// is dead once that process is gone (its instance lock is free), and
// unknown when no lock of it is on this machine.
func (m *Manager) Liveness(owner string) providers.Liveness {
	id, instance, ok := strings.Cut(owner, "@")
	if !ok {
		return providers.OwnerUnknown
	}
	if instance != m.instance {
		return instanceLiveness(m.cfg.InstanceDir, instance)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions[id]; ok && !s.ended {
		return providers.OwnerLive
	}
	return providers.OwnerDead
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

func (m *Manager) session(id string) *state {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok {
		s = &state{sandboxes: map[string]Handle{}}
		m.sessions[id] = s
	}
	return s
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
	s := m.session(sessionID)
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.create(ctx, s, sessionID, provider, opts)
}

func (m *Manager) create(ctx context.Context, s *state, sessionID, provider string, opts providers.CreateOptions) (providers.Sandbox, error) {
	if s.ended {
		return providers.Sandbox{}, refusal{ErrEnded, providers.ErrNotFound, "this session has ended"}
	}
	p, err := m.Provider(provider)
	if err != nil {
		return providers.Sandbox{}, err
	}
	if m.cfg.MaxSandboxes > 0 && len(s.sandboxes) >= m.cfg.MaxSandboxes {
		return providers.Sandbox{}, refusal{ErrLimit, providers.ErrInvalidArgument,
			fmt.Sprintf("this session already holds %s, the limit per session", sandboxes(len(s.sandboxes)))}
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
	s.sandboxes[sb.ID] = Handle{Provider: p.Name(), ID: sb.ID}
	s.current = sb.ID
	m.cfg.Logger.Info("sandbox created", "session", sessionID, "provider", p.Name(), "sandbox", sb.ID, "duration", time.Since(start))
	return sb, nil
}

// Resolve finds the sandbox a call means: sandboxID if the session owns it,
// else (when sandboxID is empty) the session's current sandbox, created on
// first use with the default provider.
func (m *Manager) Resolve(ctx context.Context, sessionID, sandboxID string) (*providers.Backend, string, error) {
	s := m.session(sessionID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sandboxID == "" {
		sandboxID = s.current
		if sandboxID == "" {
			sb, err := m.create(ctx, s, sessionID, "", providers.CreateOptions{})
			if err != nil {
				return nil, "", err
			}
			sandboxID = sb.ID
		}
	}
	h, ok := s.sandboxes[sandboxID]
	if !ok {
		return nil, "", notFound(sandboxID)
	}
	return m.cfg.Providers[h.Provider], h.ID, nil
}

func notFound(id string) error {
	return refusal{ErrUnknownSandbox, providers.ErrNotFound, fmt.Sprintf("sandbox %q not found in this session", id)}
}

// List describes the session's sandboxes, oldest first, and names the current one.
func (m *Manager) List(ctx context.Context, sessionID string) ([]providers.Sandbox, string, error) {
	s := m.session(sessionID)
	s.mu.Lock()
	handles := make([]Handle, 0, len(s.sandboxes))
	for _, h := range s.sandboxes {
		handles = append(handles, h)
	}
	current := s.current
	s.mu.Unlock()
	out := make([]providers.Sandbox, 0, len(handles))
	for _, h := range handles {
		sb, err := m.cfg.Providers[h.Provider].Get(ctx, h.ID)
		if errors.Is(err, providers.ErrNotFound) {
			m.forget(s, h.ID) // gone behind our back (expired, removed by hand)
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

func (m *Manager) forget(s *state, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sandboxes, id)
	if s.current == id {
		s.current = ""
	}
}

// Destroy destroys one of the session's sandboxes.
func (m *Manager) Destroy(ctx context.Context, sessionID, sandboxID string) error {
	s := m.session(sessionID)
	s.mu.Lock()
	h, ok := s.sandboxes[sandboxID]
	s.mu.Unlock()
	if !ok {
		return notFound(sandboxID)
	}
	err := m.cfg.Providers[h.Provider].Destroy(ctx, h.ID)
	if err != nil && !errors.Is(err, providers.ErrNotFound) {
		return err
	}
	m.forget(s, sandboxID)
	m.cfg.Logger.Info("sandbox destroyed", "session", sessionID, "provider", h.Provider, "sandbox", h.ID)
	return nil
}

// End forgets a session; its sandboxes are released (destroyed, unless the
// driver is a providers.Releaser that decides otherwise) unless the manager
// keeps them. It is safe to call for unknown sessions and more than once.
func (m *Manager) End(ctx context.Context, sessionID string) {
	m.mu.Lock()
	s, ok := m.sessions[sessionID]
	delete(m.sessions, sessionID)
	m.mu.Unlock()
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	for _, h := range s.sandboxes {
		if m.cfg.KeepSandboxes {
			m.cfg.Logger.Info("session ended; keeping sandbox", "session", sessionID, "provider", h.Provider, "sandbox", h.ID)
			continue
		}
		destroyed, err := m.cfg.Providers[h.Provider].Release(ctx, h.ID)
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
	s.sandboxes = map[string]Handle{}
}

// Close ends every session (at shutdown) and gives up the instance lock.
func (m *Manager) Close(ctx context.Context) {
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.lock != nil {
			unlockInstance(m.lock)
			m.lock = nil
		}
	}()
	m.mu.Lock()
	ids := make([]string, 0, len(m.sessions))
	for id := range m.sessions {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		m.End(ctx, id)
	}
}
