package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Record is what a store keeps of one session.
type Record struct {
	// Owner is the providers.LabelSession value of the server that started
	// the session: who it belongs to, kept for logs and operators.
	Owner string `json:"owner,omitempty"`
	// Sandboxes are the session's sandboxes, oldest first.
	Sandboxes []Handle `json:"sandboxes,omitempty"`
	// Current is the ID of the sandbox calls without a sandbox_id use.
	Current string `json:"current,omitempty"`
	// Client names who started the session (a keyed hash of its address
	// and name), for the sessions-per-client cap across servers.
	Client string `json:"client,omitempty"`
	// Ended is set once the session has ended; nothing more is done for it.
	Ended bool `json:"ended,omitempty"`
	// Protocol is what initialize settled, for a server that did not see
	// it to serve the session's requests (HTTP sessions in a shared store).
	Protocol *Protocol `json:"protocol,omitempty"`
	// LogLevel is the level the client last asked for with
	// logging/setLevel, for every server that serves it to send its log
	// messages at.
	LogLevel string `json:"log_level,omitempty"`
}

// Protocol is the state of an MCP session that initialize settles.
type Protocol struct {
	Version      string          `json:"version"`
	ClientInfo   json.RawMessage `json:"client_info,omitempty"`
	Capabilities json.RawMessage `json:"capabilities,omitempty"`
}

// Known tells a session the store holds (live or ended) from one it has
// never heard of: a session is recorded from its start (Manager.Start) or
// its first sandbox.
func (r Record) Known() bool { return r.Owner != "" || r.Ended }

func (r Record) find(id string) (Handle, bool) {
	for _, h := range r.Sandboxes {
		if h.ID == id {
			return h, true
		}
	}
	return Handle{}, false
}

func (r *Record) forget(id string) {
	for i, h := range r.Sandboxes {
		if h.ID == id {
			r.Sandboxes = append(r.Sandboxes[:i:i], r.Sandboxes[i+1:]...)
			break
		}
	}
	if r.Current == id {
		r.Current = ""
	}
}

// Store keeps session records where every server sharing it sees them. A
// record not used for the store's idle TTL is dropped.
//
// Changes to a record are made under its session's lease, so that two
// servers never both create the first sandbox of a session; ending is a
// single atomic transition, so that exactly one caller destroys what the
// session held.
type Store interface {
	// Get returns the session's record (the zero Record when it has none)
	// and counts as a use of it.
	Get(ctx context.Context, id string) (Record, error)
	// Live tells whether the session has a record that has not ended,
	// without counting as a use (reapers ask it).
	Live(ctx context.Context, id string) (bool, error)
	// Lock waits for the session's lease; only its holder may Put.
	Lock(ctx context.Context, id string) (Lease, error)
	// End marks the session ended and returns what it held. Only the first
	// caller gets won=true; everyone else finds it already ended.
	End(ctx context.Context, id string) (rec Record, won bool, err error)
	// Count returns how many sessions are live (recorded, not ended, not
	// expired), for session caps that hold across servers.
	Count(ctx context.Context) (int, error)
	// Idlest returns the live session unused for longest, if unused for at
	// least idle, to end for a new one at a session cap.
	Idlest(ctx context.Context, idle time.Duration) (id string, ok bool, err error)
	// ClientSessions counts the live sessions whose record names client,
	// and returns the one of them unused for longest, if unused for at
	// least idle (ok false when none is).
	ClientSessions(ctx context.Context, client string, idle time.Duration) (n int, idlest string, ok bool, err error)
	// Pin sets a store-wide setting name to value unless it is set, and
	// returns the value it holds: servers sharing the store use it to check
	// that they agree on what must be the same for all.
	Pin(ctx context.Context, name, value string) (string, error)
	// TryHold takes the store-wide lease name for ttl, renewed while held,
	// or returns nil when another server holds it: what lets one server at
	// a time do what all could (the reaper's sweep).
	TryHold(ctx context.Context, name string, ttl time.Duration) (Hold, error)
	// Shared is true when other server processes see the same records.
	Shared() bool
	// Ping tells whether the store answers.
	Ping(ctx context.Context) error
	Close() error
}

// Lease is the right to change one session's record.
type Lease interface {
	// Put replaces the record. It fails with ErrEnded if the session ended
	// meanwhile, and with ErrLeaseLost if the lease was lost (a store that
	// stopped answering for longer than the lease lasts).
	Put(ctx context.Context, r Record) error
	Release()
}

// Hold is a store-wide lease one server at a time holds (Store.TryHold).
type Hold interface {
	// Held tells whether the lease is still this server's: one that could
	// not renew it in time (a store that stopped answering) has lost it.
	Held() bool
	Release()
}

// ErrLeaseLost: the lease expired before the change was written, so
// another server may have changed the record since; nothing was written.
var ErrLeaseLost = errors.New("session lease lost before the change was saved")

// StoreError wraps a store failure so callers can tell it from a refusal.
type StoreError struct{ Err error }

func (e *StoreError) Error() string {
	return fmt.Sprintf("the session store failed: %v (the call can be retried once it answers again)", e.Err)
}
func (e *StoreError) Unwrap() error { return e.Err }

// endedRetention is the least time an ended session's record is kept, so
// that a call racing the end is refused rather than starting it afresh.
const endedRetention = time.Hour

// MemoryStore keeps records in this process: they end with it.
type MemoryStore struct {
	ttl       time.Duration
	mu        sync.Mutex
	records   map[string]*memRecord
	leases    map[string]*memLease
	pins      map[string]string
	lastSweep time.Time
}

type memRecord struct {
	rec     Record
	expires time.Time // zero: never
}

// NewMemoryStore returns a store whose records are dropped after idle for
// ttl (0: kept until ended, and then for endedRetention).
func NewMemoryStore(ttl time.Duration) *MemoryStore {
	return &MemoryStore{ttl: ttl, records: map[string]*memRecord{}, leases: map[string]*memLease{}}
}

func (s *MemoryStore) expiry(now time.Time, ended bool) time.Time {
	switch {
	case ended:
		return now.Add(max(s.ttl, endedRetention))
	case s.ttl > 0:
		return now.Add(s.ttl)
	}
	return time.Time{}
}

// lookup returns the live entry for id, under s.mu, sweeping expired ones
// at most once a minute.
func (s *MemoryStore) lookup(id string, now time.Time) *memRecord {
	if now.Sub(s.lastSweep) > time.Minute {
		s.lastSweep = now
		for k, r := range s.records {
			if !r.expires.IsZero() && now.After(r.expires) {
				delete(s.records, k)
			}
		}
	}
	r, ok := s.records[id]
	if !ok || (!r.expires.IsZero() && now.After(r.expires)) {
		return nil
	}
	return r
}

func (s *MemoryStore) Get(ctx context.Context, id string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	r := s.lookup(id, now)
	if r == nil {
		return Record{}, nil
	}
	if !r.rec.Ended {
		r.expires = s.expiry(now, false)
	}
	return r.rec.clone(), nil
}

func (s *MemoryStore) Live(ctx context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.lookup(id, time.Now())
	return r != nil && !r.rec.Ended, nil
}

func (s *MemoryStore) End(ctx context.Context, id string) (Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	r := s.lookup(id, now)
	if r != nil && r.rec.Ended {
		return Record{}, false, nil
	}
	var rec Record
	if r != nil {
		rec = r.rec
	}
	s.records[id] = &memRecord{rec: Record{Owner: rec.Owner, Ended: true}, expires: s.expiry(now, true)}
	return rec, true, nil
}

// memLease is a mutex a waiter can give up on; refs counts holders and
// waiters, so the entry goes when nobody needs it.
type memLease struct {
	ch   chan struct{}
	refs int
}

type memHeld struct {
	s    *MemoryStore
	id   string
	l    *memLease
	once sync.Once
}

func (s *MemoryStore) Lock(ctx context.Context, id string) (Lease, error) {
	s.mu.Lock()
	l, ok := s.leases[id]
	if !ok {
		l = &memLease{ch: make(chan struct{}, 1)}
		s.leases[id] = l
	}
	l.refs++
	s.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return &memHeld{s: s, id: id, l: l}, nil
	case <-ctx.Done():
		s.unref(id, l)
		return nil, ctx.Err()
	}
}

func (s *MemoryStore) unref(id string, l *memLease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(s.leases, id)
	}
}

func (h *memHeld) Put(ctx context.Context, rec Record) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if r := s.lookup(h.id, now); r != nil && r.rec.Ended {
		return ErrEnded
	}
	s.records[h.id] = &memRecord{rec: rec.clone(), expires: s.expiry(now, false)}
	return nil
}

func (h *memHeld) Release() {
	h.once.Do(func() {
		<-h.l.ch
		h.s.unref(h.id, h.l)
	})
}

func (s *MemoryStore) Count(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := time.Now(), 0
	for _, r := range s.records {
		if !r.rec.Ended && (r.expires.IsZero() || now.Before(r.expires)) {
			n++
		}
	}
	return n, nil
}

func (s *MemoryStore) Idlest(ctx context.Context, idle time.Duration) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ttl <= 0 {
		return "", false, nil // no expiry, no record of last use
	}
	now := time.Now()
	best, found := "", false
	var bestExp time.Time
	for id, r := range s.records {
		if r.rec.Ended || now.After(r.expires) || now.Sub(r.expires.Add(-s.ttl)) < idle {
			continue
		}
		if !found || r.expires.Before(bestExp) {
			best, bestExp, found = id, r.expires, true
		}
	}
	return best, found, nil
}

func (s *MemoryStore) ClientSessions(ctx context.Context, client string, idle time.Duration) (int, string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := time.Now(), 0
	best, found := "", false
	var bestExp time.Time
	for id, r := range s.records {
		if r.rec.Client != client || r.rec.Ended || (!r.expires.IsZero() && now.After(r.expires)) {
			continue
		}
		n++
		if s.ttl <= 0 || now.Sub(r.expires.Add(-s.ttl)) < idle {
			continue // no record of last use, or used too recently
		}
		if !found || r.expires.Before(bestExp) {
			best, bestExp, found = id, r.expires, true
		}
	}
	return n, best, found, nil
}

func (s *MemoryStore) Pin(ctx context.Context, name, value string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pins == nil {
		s.pins = map[string]string{}
	}
	if v, ok := s.pins[name]; ok {
		return v, nil
	}
	s.pins[name] = value
	return value, nil
}

// TryHold always succeeds: no other process shares the store.
func (s *MemoryStore) TryHold(context.Context, string, time.Duration) (Hold, error) {
	return heldAlone{}, nil
}

type heldAlone struct{}

func (heldAlone) Held() bool { return true }
func (heldAlone) Release()   {}

func (s *MemoryStore) Shared() bool                   { return false }
func (s *MemoryStore) Ping(ctx context.Context) error { return nil }
func (s *MemoryStore) Close() error                   { return nil }

func (r Record) clone() Record {
	r.Sandboxes = append([]Handle(nil), r.Sandboxes...)
	return r
}
