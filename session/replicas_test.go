package session_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/session"
	"github.com/mcp-sandbox/mcp-sandbox/session/redistest"
)

// countingProvider counts the destroy calls each sandbox got.
type countingProvider struct {
	providers.Provider
	mu        sync.Mutex
	destroyed map[string]int
}

func (c *countingProvider) Destroy(ctx context.Context, id string) error {
	c.mu.Lock()
	c.destroyed[id]++
	c.mu.Unlock()
	return c.Provider.Destroy(ctx, id)
}

// replicas returns two Managers sharing one Redis and one backend, as two
// servers behind a load balancer would.
func replicas(t *testing.T) (a, b *session.Manager, p *countingProvider) {
	t.Helper()
	r := redistest.Start(t)
	lp, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyAll(lp) })
	p = &countingProvider{Provider: lp, destroyed: map[string]int{}}
	backends := providers.Wrap(map[string]providers.Provider{"local": p})
	open := func() *session.Manager {
		s, err := session.NewRedisStore(context.Background(), r.URL, 0)
		if err != nil {
			t.Fatal(err)
		}
		m, err := session.New(session.Config{Providers: backends, Default: "local", ServerID: "srv", Store: s})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(context.Background()); s.Close() })
		return m
	}
	return open(), open(), p
}

func TestReplicasFirstUseCreatesOneSandbox(t *testing.T) {
	ctx := context.Background()
	a, b, p := replicas(t)
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		m := a
		if i%2 == 1 {
			m = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, id, err := m.Resolve(ctx, "s", "")
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	all, _ := p.List(ctx, nil)
	if len(all) != 1 {
		t.Fatalf("two servers' first calls made %d sandboxes, want 1", len(all))
	}
	for _, id := range ids {
		if id != all[0].ID {
			t.Fatalf("calls got different sandboxes: %v", ids)
		}
	}
}

func TestReplicasShareSandboxes(t *testing.T) {
	ctx := context.Background()
	a, b, _ := replicas(t)
	sb, err := a.Create(ctx, "s", "", providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, id, err := b.Resolve(ctx, "s", ""); err != nil || id != sb.ID {
		t.Fatalf("the other server's current sandbox: %q, %v; want %q", id, err, sb.ID)
	}
	list, current, err := b.List(ctx, "s")
	if err != nil || len(list) != 1 || current != sb.ID {
		t.Fatalf("the other server lists %v (current %q), %v", list, current, err)
	}
	if _, _, err := b.Resolve(ctx, "intruder", sb.ID); !errors.Is(err, session.ErrUnknownSandbox) {
		t.Fatalf("another session resolved the sandbox on the other server: %v", err)
	}
	if got := b.Liveness(a.Owner("s")); got != providers.OwnerLive {
		t.Fatalf("the other server sees the session's sandbox as %v, want live", got)
	}
	// A server that stops leaves the shared session to the others.
	a.Close(ctx)
	if _, id, err := b.Resolve(ctx, "s", sb.ID); err != nil || id != sb.ID {
		t.Fatalf("after the first server stopped: %q, %v", id, err)
	}
	if err := b.Destroy(ctx, "s", sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Resolve(ctx, "s", sb.ID); !errors.Is(err, session.ErrUnknownSandbox) {
		t.Fatalf("a sandbox destroyed on one server resolves on the other: %v", err)
	}
}

func TestReplicasEndDestroysOnce(t *testing.T) {
	ctx := context.Background()
	a, b, p := replicas(t)
	var made []string
	for i := 0; i < 3; i++ {
		m := []*session.Manager{a, b}[i%2]
		sb, err := m.Create(ctx, "s", "", providers.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, sb.ID)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); []*session.Manager{a, b}[i%2].End(ctx, "s") }()
	}
	wg.Wait()
	for _, id := range made {
		if n := p.destroyed[id]; n != 1 {
			t.Errorf("sandbox %s destroyed %d times, want once", id, n)
		}
		if _, err := p.Get(ctx, id); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("sandbox %s outlived its session: %v", id, err)
		}
	}
	if _, _, err := b.Resolve(ctx, "s", ""); !errors.Is(err, session.ErrEnded) {
		t.Fatalf("a call after the end: %v, want ErrEnded, not a new sandbox", err)
	}
	if got := a.Liveness(a.Owner("s")); got != providers.OwnerDead {
		t.Fatalf("an ended session's owner is %v, want dead", got)
	}
}

// A first use racing the end on another server either loses to it or is
// destroyed by it: no sandbox outlives the session.
func TestReplicasCreateRacingEndLeavesNothing(t *testing.T) {
	ctx := context.Background()
	a, b, p := replicas(t)
	for i := 0; i < 10; i++ {
		id := "s" + string(rune('a'+i))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, _, err := a.Resolve(ctx, id, ""); err != nil && !errors.Is(err, session.ErrEnded) {
				t.Error(err)
			}
		}()
		go func() { defer wg.Done(); b.End(ctx, id) }()
		wg.Wait()
	}
	if all, _ := p.List(ctx, nil); len(all) != 0 {
		t.Fatalf("%d sandboxes outlived their sessions", len(all))
	}
}

// In a shared store every session is recorded from its start, so a session
// the store no longer holds (ended, expired, or lost with a Redis that kept
// nothing) is dead whichever server started it: its sandboxes are reaped
// at once, not at their expiry.
func TestReplicasSessionGoneFromTheStoreIsDead(t *testing.T) {
	ctx := context.Background()
	a, b, _ := replicas(t)
	if err := a.Start(ctx, "s", session.Protocol{Version: "2025-06-18"}, ""); err != nil {
		t.Fatal(err)
	}
	if got := b.Liveness(a.Owner("s")); got != providers.OwnerLive {
		t.Fatalf("a started session, seen by the other server: %v, want live", got)
	}
	if got := b.Liveness(a.Owner("never-started")); got != providers.OwnerDead {
		t.Fatalf("a session the store does not hold, seen by the other server: %v, want dead", got)
	}
	b.End(ctx, "s")
	if got := b.Liveness(a.Owner("s")); got != providers.OwnerDead {
		t.Fatalf("an ended session, seen by the other server: %v, want dead", got)
	}
}

// reapCounter counts the sweeps of one server.
type reapCounter struct {
	providers.Provider
	n atomic.Int64
}

func (r *reapCounter) Reap(ctx context.Context, owner func(string) providers.Liveness) ([]string, error) {
	r.n.Add(1)
	return nil, nil
}

// Of servers sharing one Redis, one at a time sweeps the providers: the
// holder of the reaper lease, for as long as it runs. One that stops hands
// it over at once; one that dies holding it blocks the others only until
// the lease expires.
func TestReplicasReapOneAtATime(t *testing.T) {
	ctx := context.Background()
	r := redistest.Start(t)
	lp, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const lease = 600 * time.Millisecond
	var (
		managers []*session.Manager
		stores   []*session.RedisStore
		counts   []*reapCounter
	)
	for range 4 {
		s, err := session.NewRedisStore(ctx, r.URL, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := &reapCounter{Provider: lp}
		m, err := session.New(session.Config{Providers: providers.Wrap(map[string]providers.Provider{"local": c}),
			Default: "local", ServerID: "srv", Store: s, ReapLease: lease})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(ctx); s.Close() })
		managers, stores, counts = append(managers, m), append(stores, s), append(counts, c)
	}
	// round has every live server try to reap at once, and returns which swept.
	round := func(live []int) []int {
		var mu sync.Mutex
		var swept []int
		var wg sync.WaitGroup
		for _, i := range live {
			wg.Add(1)
			go func() {
				defer wg.Done()
				before := counts[i].n.Load()
				if managers[i].Reap(ctx) {
					if counts[i].n.Load() != before+1 {
						t.Errorf("server %d says it swept, its provider saw %d sweeps", i, counts[i].n.Load()-before)
					}
					mu.Lock()
					swept = append(swept, i)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return swept
	}
	all := []int{0, 1, 2, 3}
	first := round(all)
	if len(first) != 1 {
		t.Fatalf("first round: servers %v swept, want exactly one", first)
	}
	holder := first[0]
	for i := range 5 {
		if got := round(all); len(got) != 1 || got[0] != holder {
			t.Fatalf("round %d: servers %v swept, want only the lease holder %d", i, got, holder)
		}
	}
	// Held across several lease lengths: it is renewed.
	time.Sleep(2 * lease)
	if got := round(all); len(got) != 1 || got[0] != holder {
		t.Fatalf("after two lease lengths: servers %v swept, want the holder %d still", got, holder)
	}

	// A server that stops hands the lease over at once.
	managers[holder].Close(ctx)
	rest := slices.DeleteFunc(slices.Clone(all), func(i int) bool { return i == holder })
	got := round(rest)
	if len(got) != 1 {
		t.Fatalf("after the holder stopped: servers %v swept, want exactly one", got)
	}
	holder = got[0]

	// One that dies (its connection to Redis gone, nothing released) keeps
	// the others waiting until the lease expires, and no longer.
	stores[holder].Close()
	rest = slices.DeleteFunc(rest, func(i int) bool { return i == holder })
	if got := round(rest); len(got) != 0 {
		t.Fatalf("right after the holder died: servers %v swept, want none until its lease expires", got)
	}
	deadline := time.Now().Add(lease + 2*time.Second)
	for {
		got := round(rest)
		if len(got) == 1 {
			break
		}
		if len(got) > 1 || time.Now().After(deadline) {
			t.Fatalf("after the dead holder's lease expired: servers %v swept, want exactly one", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	total := int64(0)
	for _, c := range counts {
		total += c.n.Load()
	}
	if want := int64(1 + 5 + 1 + 1 + 1); total != want {
		t.Errorf("%d sweeps in all, want %d (one per round)", total, want)
	}
}

// A store of its own needs no lease: its one server always reaps.
func TestMemoryStoreServerAlwaysReaps(t *testing.T) {
	m, _ := newManager(t, nil)
	for range 3 {
		if !m.Reap(context.Background()) {
			t.Fatal("a server with a store of its own did not reap")
		}
	}
}
