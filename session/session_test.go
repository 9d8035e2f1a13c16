package session_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/session"
)

// destroyAll destroys every sandbox of a provider.
func destroyAll(p providers.Provider) {
	sbs, _ := p.List(context.Background(), nil)
	for _, sb := range sbs {
		p.Destroy(context.Background(), sb.ID)
	}
}

func newManager(t *testing.T, mutate func(*session.Config)) (*session.Manager, providers.Provider) {
	t.Helper()
	p, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyAll(p) }) // kept sandboxes too: each is a live jail
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

func TestOwnerLiveness(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, _ := newManager(t, func(c *session.Config) { c.InstanceDir = dir })
	other, _ := newManager(t, func(c *session.Config) { c.InstanceDir = dir })
	elsewhere, _ := newManager(t, func(c *session.Config) { c.InstanceDir = t.TempDir() })
	m.Create(ctx, "stdio", "", providers.CreateOptions{})
	other.Create(ctx, "stdio", "", providers.CreateOptions{})
	crashed := crashedOwner(t, dir)
	for _, tc := range []struct {
		name  string
		owner string
		want  providers.Liveness
	}{
		{"a live session of this process", m.Owner("stdio"), providers.OwnerLive},
		{"a session this process never had", m.Owner("gone"), providers.OwnerDead},
		{"another live server on this machine", other.Owner("stdio"), providers.OwnerLive},
		{"a killed server on this machine", crashed, providers.OwnerDead},
		{"a server this machine cannot see", elsewhere.Owner("stdio"), providers.OwnerUnknown},
		{"no instance", "stdio", providers.OwnerUnknown},
		{"an instance that is not an ID", "stdio@../../etc/passwd", providers.OwnerUnknown},
	} {
		if got := m.Liveness(tc.owner); got != tc.want {
			t.Errorf("%s: Liveness(%q) = %v, want %v", tc.name, tc.owner, got, tc.want)
		}
	}
	m.End(ctx, "stdio")
	if got := m.Liveness(m.Owner("stdio")); got != providers.OwnerDead {
		t.Errorf("an ended session is %v, want dead", got)
	}
	// A clean exit gives up the lock and its file: what is left is unknown.
	other.Close(ctx)
	if got := m.Liveness(other.Owner("stdio")); got != providers.OwnerUnknown {
		t.Errorf("after a clean exit the other server's session is %v, want unknown", got)
	}
}

// crashedOwner starts this test binary as a server holding an instance lock
// in dir, SIGKILLs it and returns an owner label of it.
func crashedOwner(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldInstance$")
	cmd.Env = append(os.Environ(), "SESSION_TEST_INSTANCE_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	owner, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the holder said nothing: %v", err)
	}
	owner = strings.TrimSpace(owner)
	cmd.Process.Kill()
	cmd.Wait()
	return owner
}

// TestHoldInstance is the process crashedOwner kills.
func TestHoldInstance(t *testing.T) {
	dir := os.Getenv("SESSION_TEST_INSTANCE_DIR")
	if dir == "" {
		t.Skip("run by TestOwnerLiveness")
	}
	m, _ := newManager(t, func(c *session.Config) { c.InstanceDir = dir })
	fmt.Println(m.Owner("s"))
	time.Sleep(time.Minute)
}

func TestKeptSandboxesAreLabelled(t *testing.T) {
	ctx := context.Background()
	for _, keep := range []bool{false, true} {
		m, _ := newManager(t, func(c *session.Config) { c.KeepSandboxes = keep })
		sb, err := m.Create(ctx, "s", "", providers.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := sb.Labels[providers.LabelKeep] == "true"; got != keep {
			t.Errorf("keep=%v: labels %v", keep, sb.Labels)
		}
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

// releasingProvider records what session end asked of it.
type releasingProvider struct {
	providers.Provider
	released, destroyed []string
}

func (r *releasingProvider) Release(ctx context.Context, id string) error {
	r.released = append(r.released, id)
	return nil
}

func (r *releasingProvider) Destroy(ctx context.Context, id string) error {
	r.destroyed = append(r.destroyed, id)
	return nil
}

// TestEndReleasesWhenTheDriverDecides: a providers.Releaser's sandboxes are
// released, not destroyed, when their session ends; sandbox_destroy still
// destroys.
func TestEndReleasesWhenTheDriverDecides(t *testing.T) {
	ctx := context.Background()
	var rp *releasingProvider
	m, inner := newManager(t, func(c *session.Config) {
		rp = &releasingProvider{}
		c.Providers = providers.Wrap(map[string]providers.Provider{"local": rp})
	})
	rp.Provider = inner
	a, err := m.Create(ctx, "s1", "", providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(ctx, "s1", "", providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rp.Provider.Destroy(ctx, a.ID); rp.Provider.Destroy(ctx, b.ID) })
	if err := m.Destroy(ctx, "s1", b.ID); err != nil {
		t.Fatal(err)
	}
	m.End(ctx, "s1")
	if len(rp.released) != 1 || rp.released[0] != a.ID || len(rp.destroyed) != 1 || rp.destroyed[0] != b.ID {
		t.Errorf("released %v, destroyed %v; want %s released and %s destroyed", rp.released, rp.destroyed, a.ID, b.ID)
	}
}

// livenessProbe is a provider that asks, while a sandbox is being made,
// what a reaper sweeping at that moment would be told of its owner.
type livenessProbe struct {
	providers.Provider
	m    *session.Manager
	seen providers.Liveness
}

func (p *livenessProbe) Create(ctx context.Context, opts providers.CreateOptions) (providers.Sandbox, error) {
	sb, err := p.Provider.Create(ctx, opts)
	p.seen = p.m.Liveness(opts.Labels[providers.LabelSession])
	return sb, err
}

// A reaper that lists a session's first sandbox before its create returns
// (a server's start-up sweep racing its first tool call) must find the
// owner live: a stdio session is recorded by its first create.
func TestFirstSandboxIsLiveWhileBeingMade(t *testing.T) {
	ctx := context.Background()
	inner, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyAll(inner) })
	probe := &livenessProbe{Provider: inner}
	m, err := session.New(session.Config{Providers: providers.Wrap(map[string]providers.Provider{"local": probe}), Default: "local", ServerID: "srv"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(ctx) })
	probe.m = m
	if _, err := m.Create(ctx, "stdio", "", providers.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if probe.seen != providers.OwnerLive {
		t.Fatalf("a reaper sweeping during the first create is told the owner is %v, want live", probe.seen)
	}
}
