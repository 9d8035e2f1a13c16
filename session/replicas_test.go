package session_test

import (
	"context"
	"errors"
	"sync"
	"testing"

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
