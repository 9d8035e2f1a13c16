package session_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/session"
)

func newManager(t *testing.T, mutate func(*session.Config)) (*session.Manager, providers.Provider) {
	t.Helper()
	p, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := session.Config{Providers: providers.Wrap(map[string]providers.Provider{"local": p}), Default: "local", ServerID: "srv"}
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := session.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m, p
}

func TestOwnershipAndLabels(t *testing.T) {
	ctx := context.Background()
	m, p := newManager(t, nil)
	sb, err := m.Create(ctx, "a", "", providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := p.Get(ctx, sb.ID)
	if got.Labels[providers.LabelSession] != m.Owner("a") || got.Labels[session.LabelServer] != "srv" {
		t.Fatalf("labels: %v", got.Labels)
	}
	if _, _, err := m.Resolve(ctx, "b", sb.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("another session resolved the sandbox: %v", err)
	}
	if err := m.Destroy(ctx, "b", sb.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Fatalf("another session destroyed the sandbox: %v", err)
	}
	if _, err := p.Get(ctx, sb.ID); err != nil {
		t.Fatalf("sandbox gone: %v", err)
	}
}

func TestConcurrentFirstUseCreatesOneSandbox(t *testing.T) {
	ctx := context.Background()
	m, p := newManager(t, nil)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
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
	all, _ := p.List(ctx, map[string]string{providers.LabelSession: m.Owner("s")})
	if len(all) != 1 {
		t.Fatalf("want one sandbox, got %d", len(all))
	}
	for _, id := range ids {
		if id != all[0].ID {
			t.Fatalf("calls got different sandboxes: %v", ids)
		}
	}
}

func TestEndDestroysUnlessKept(t *testing.T) {
	ctx := context.Background()
	for _, keep := range []bool{false, true} {
		m, p := newManager(t, func(c *session.Config) { c.KeepSandboxes = keep })
		sb, _ := m.Create(ctx, "s", "", providers.CreateOptions{})
		m.End(ctx, "s")
		_, err := p.Get(ctx, sb.ID)
		if keep && err != nil {
			t.Fatalf("kept sandbox gone: %v", err)
		}
		if !keep && !errors.Is(err, providers.ErrNotFound) {
			t.Fatalf("sandbox survived its session: %v", err)
		}
	}
}

func TestSandboxLimitPerSession(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, func(c *session.Config) { c.MaxSandboxes = 2 })
	for i := 0; i < 2; i++ {
		if _, err := m.Create(ctx, "s", "", providers.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := m.Create(ctx, "s", "", providers.CreateOptions{})
	if !errors.Is(err, session.ErrLimit) {
		t.Fatalf("third sandbox: %v", err)
	}
	if _, err := m.Create(ctx, "other", "", providers.CreateOptions{}); err != nil {
		t.Fatalf("the limit is per session: %v", err)
	}
}

func TestOwnerLabelsAreLiveOnlyInTheirOwnProcess(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, nil)
	other, _ := newManager(t, nil)
	m.Create(ctx, "stdio", "", providers.CreateOptions{})
	other.Create(ctx, "stdio", "", providers.CreateOptions{})
	if !m.IsLive(m.Owner("stdio")) || m.IsLive(other.Owner("stdio")) || m.IsLive("stdio") {
		t.Fatal("a session is live only for the manager that owns it")
	}
	m.End(ctx, "stdio")
	if m.IsLive(m.Owner("stdio")) {
		t.Fatal("an ended session is not live")
	}
}

// The manager's refusals are typed, so the tools can word them; their
// messages name no tool.
func TestRefusalsAreTyped(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, func(c *session.Config) { c.MaxSandboxes = 1 })
	m.Create(ctx, "s", "", providers.CreateOptions{})
	_, limitErr := m.Create(ctx, "s", "", providers.CreateOptions{})
	_, _, unknownErr := m.Resolve(ctx, "s", "someone-elses")
	for _, tc := range []struct {
		err        error
		want, kind error
	}{
		{limitErr, session.ErrLimit, providers.ErrInvalidArgument},
		{unknownErr, session.ErrUnknownSandbox, providers.ErrNotFound},
	} {
		if !errors.Is(tc.err, tc.want) || !errors.Is(tc.err, tc.kind) || strings.Contains(tc.err.Error(), "sandbox_") {
			t.Errorf("got %v, want %v of kind %v naming no tool", tc.err, tc.want, tc.kind)
		}
	}
}
