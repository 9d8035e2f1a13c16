package docker_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
)

// The whole suite on pooled sandboxes alone: every Create takes a warm
// container, so hardening, labels, env, files and processes hold for them
// as for cold ones.
func TestProviderWarmPool(t *testing.T) {
	set := settings(docker.EnvPool, "2")
	providertest.Run(t, func(t *testing.T) providers.Provider {
		p := open(t, set)
		p.WarmOnly()
		return p
	})
}

// waitWarm waits until p keeps n warm containers.
func waitWarm(t *testing.T, p *docker.Provider, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for p.WarmCount(context.Background()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not reach %d warm containers (has %d)", n, p.WarmCount(context.Background()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// poolContainers lists the server's unclaimed pooled containers, ready or
// being made.
func poolContainers(t *testing.T, p *docker.Provider, server string) []string {
	t.Helper()
	res, err := p.Client().ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "mcp-sandbox.server="+server).Add("name", "mcp-sandbox-pool-", "mcp-sandbox-warming-")})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range res.Items {
		// One handed out keeps its pool name a moment: its claim says so.
		if _, err := p.Client().VolumeInspect(context.Background(), "mcp-sandbox-claim-"+c.ID, client.VolumeInspectOptions{}); err == nil {
			continue
		}
		ids = append(ids, c.ID)
	}
	return ids
}

// A warm sandbox is made exactly as a cold one: same host config (limits,
// capabilities, mounts, network), same image and entrypoint, same labels
// as Get and List report them; the env given at create reaches every
// command, by engine exec and through the channel, in the foreground and in
// the background.
func TestWarmSandboxIsAsACold(t *testing.T) {
	set := settings(docker.EnvPool, "1")
	warm := open(t, set)
	cold := open(t, settings(envServer, set[envServer]))
	waitWarm(t, warm, 1)
	ctx := context.Background()
	opts := providers.CreateOptions{Name: "same", Env: map[string]string{"GREETING": "hello there", "OVERRIDDEN": "create"},
		Labels: map[string]string{providers.LabelSession: "s1", "team": "a"}}
	w := create(t, warm, opts)
	c := create(t, cold, opts)

	inspect := func(id string) (client.ContainerInspectResult, error) {
		return warm.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	}
	wi, err := inspect(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := inspect(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if wi.Container.Config.Labels["mcp-sandbox.pool"] == "" {
		t.Fatal("the sandbox was not taken from the pool; the test proves nothing")
	}
	if !reflect.DeepEqual(wi.Container.HostConfig, ci.Container.HostConfig) {
		t.Errorf("host configs differ:\nwarm %+v\ncold %+v", wi.Container.HostConfig, ci.Container.HostConfig)
	}
	wc, cc := wi.Container.Config, ci.Container.Config
	if wc.Image != cc.Image || !reflect.DeepEqual(wc.Entrypoint, cc.Entrypoint) || wc.WorkingDir != cc.WorkingDir || wc.User != cc.User {
		t.Errorf("configs differ: warm %s %v %s %q, cold %s %v %s %q", wc.Image, wc.Entrypoint, wc.WorkingDir, wc.User, cc.Image, cc.Entrypoint, cc.WorkingDir, cc.User)
	}

	same := func(what string, a, b providers.Sandbox) {
		t.Helper()
		if a.Name != b.Name || a.Image != b.Image || a.Workdir != b.Workdir || a.DiskLimit != b.DiskLimit ||
			!reflect.DeepEqual(a.Labels, b.Labels) || a.CreatedAt.IsZero() {
			t.Errorf("%s: warm %+v, cold %+v", what, a, b)
		}
	}
	same("Create", w, c)
	gw, err := cold.Get(ctx, w.ID) // any server with the ID reads it
	if err != nil {
		t.Fatal(err)
	}
	gc, err := warm.Get(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	same("Get", gw, gc)
	if d := gw.CreatedAt.Sub(w.CreatedAt); d > time.Millisecond || d < -time.Millisecond {
		t.Errorf("created %v by Create, %v by Get", w.CreatedAt, gw.CreatedAt)
	}
	list, err := warm.List(ctx, map[string]string{"team": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != w.ID && list[1].ID != w.ID {
		t.Errorf("List by label: %+v", list)
	}
	if list, err := warm.List(ctx, map[string]string{"team": "b"}); err != nil || len(list) != 0 {
		t.Errorf("List by another label: %+v %v", list, err)
	}

	// The env, every way a command runs, and a command's own on top.
	const show = `echo "$GREETING|$OVERRIDDEN"`
	for _, p := range []*docker.Provider{warm, cold} {
		id := map[*docker.Provider]string{warm: w.ID, cold: c.ID}[p]
		if out := sh(t, p, id, show); out != "hello there|create\n" {
			t.Errorf("Exec: %q", out)
		}
		var out strings.Builder
		if _, err := p.Exec(ctx, id, providers.ExecRequest{Command: show, Env: map[string]string{"OVERRIDDEN": "call"}, Stdout: &out}); err != nil || out.String() != "hello there|call\n" {
			t.Errorf("Exec with its own env: %q %v", out.String(), err)
		}
		run := func(p *docker.Provider) string {
			var out strings.Builder
			res, err := p.RunProcess(ctx, id, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: show}, Wait: 20 * time.Second, KeepAfter: 1 << 20, Stdout: &out})
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("RunProcess: %+v %v", res, err)
			}
			return out.String()
		}
		if out := run(p); out != "hello there|create\n" {
			t.Errorf("RunProcess: %q", out)
		}
		if !p.WaitChannel(id, time.Minute) {
			t.Fatal("no channel")
		}
		if out := run(p); out != "hello there|create\n" {
			t.Errorf("RunProcess through the channel: %q", out)
		}
		byExec := open(t, settings(envServer, set[envServer]))
		byExec.UseEngineExec()
		if out := run(byExec); out != "hello there|create\n" {
			t.Errorf("RunProcess by engine exec: %q", out)
		}
	}
	// The pool's own helper (for a channel before any command) never
	// served a command without the env: one helper serves the sandbox.
	const serving = `n=0; for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null | grep -q 'mcp-sandbox-supervisor-[0-9a-f]* serve' && n=$((n+1)); done; echo $n`
	if n := strings.TrimSpace(sh(t, warm, w.ID, serving)); n != "1" {
		t.Errorf("%s helpers serve the warm sandbox; want 1", n)
	}
}

// Two servers with one ID share what they keep warm; each container goes to
// one sandbox only, however their creates interleave.
func TestWarmContainerHandedOutOnce(t *testing.T) {
	set := settings(docker.EnvPool, "2")
	a, b := open(t, set), open(t, set)
	waitWarm(t, a, 2)
	waitWarm(t, b, 2)
	ctx := context.Background()
	const creates = 6
	var wg sync.WaitGroup
	made := make([]providers.Sandbox, creates)
	errs := make([]error, creates)
	for i := range creates {
		by := []*docker.Provider{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			made[i], errs[i] = by.Create(ctx, providers.CreateOptions{Name: fmt.Sprint("sandbox-", i), Env: map[string]string{"WHO": fmt.Sprint(i)}})
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	warm := 0
	for i, sb := range made {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		t.Cleanup(func() { a.Destroy(context.Background(), sb.ID) })
		if j, dup := seen[sb.ID]; dup {
			t.Fatalf("creates %d and %d got the same container %s", j, i, sb.ID[:12])
		}
		seen[sb.ID] = i
		// What each container says of itself is what its own create asked.
		got, err := a.Get(ctx, sb.ID)
		if err != nil || got.Name != fmt.Sprint("sandbox-", i) {
			t.Errorf("create %d: Get says %+v, %v", i, got, err)
		}
		if out := sh(t, a, sb.ID, "echo $WHO"); out != fmt.Sprintln(i) {
			t.Errorf("create %d: its env says %q", i, out)
		}
		ins, err := a.Client().ContainerInspect(ctx, sb.ID, client.ContainerInspectOptions{})
		if err == nil && ins.Container.Config.Labels["mcp-sandbox.pool"] != "" {
			warm++
		}
	}
	if warm < 2 {
		t.Errorf("only %d of %d creates were warm; the test proves little", warm, creates)
	}
}

// A pool holds its size: full after creates take from it, never more, and
// gone when its server stops, leaving the sandboxes it handed out.
func TestWarmPoolSize(t *testing.T) {
	set := settings(docker.EnvPool, "2")
	p := open(t, set)
	waitWarm(t, p, 2)
	var made []providers.Sandbox
	for range 3 {
		made = append(made, create(t, p, providers.CreateOptions{}))
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		n := len(poolContainers(t, p, set[envServer]))
		if n > 2 {
			t.Fatalf("the pool holds %d containers; its size is 2", n)
		}
		if n == 2 && p.WarmCount(context.Background()) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool was not refilled (%d)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Settled: still 2 a moment later, and a reaper leaves a live
	// server's pool alone.
	check := open(t, settings(envServer, set[envServer]))
	if _, err := check.Reap(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := len(poolContainers(t, check, set[envServer])); n != 2 {
		t.Fatalf("the pool holds %d containers once refilled; want 2", n)
	}
	p.Close()
	if ids := poolContainers(t, check, set[envServer]); len(ids) != 0 {
		t.Errorf("%d pooled containers outlived their server", len(ids))
	}
	for _, sb := range made {
		if _, err := check.Get(context.Background(), sb.ID); err != nil {
			t.Errorf("a sandbox the pool handed out went with it: %v", err)
		}
	}
}

// A server that dies leaves its pool; a server with its ID reaps it once
// its short expiry passes (TestWarmPoolSize: not before), and reaps the
// sandboxes it handed out by their own owners and expiry, as cold ones.
func TestDeadServersPoolIsReaped(t *testing.T) {
	// An expiry long enough for a loaded engine to make a warm container
	// well within it, short enough to wait for.
	const expiry = 12 * time.Second
	set := settings(docker.EnvPool, "2", docker.EnvExpiry, expiry.String())
	dead := open(t, set)
	waitWarm(t, dead, 2)
	ctx := context.Background()
	gone := create(t, dead, providers.CreateOptions{Labels: map[string]string{providers.LabelSession: "dead"}})
	kept := create(t, dead, providers.CreateOptions{Labels: map[string]string{providers.LabelSession: "live"}})
	for _, sb := range []providers.Sandbox{gone, kept} {
		if ins, err := dead.Client().ContainerInspect(ctx, sb.ID, client.ContainerInspectOptions{}); err != nil || ins.Container.Config.Labels["mcp-sandbox.pool"] == "" {
			t.Fatalf("%s was not taken from the pool (%v); the test proves nothing", sb.ID[:12], err)
		}
	}
	waitWarm(t, dead, 2)
	dead.AbandonPool()
	// Its pool turns over every few seconds at this expiry: some of it is
	// left, whatever it was doing.
	if left := poolContainers(t, dead, set[envServer]); len(left) == 0 {
		t.Fatal("the dead server left no warm containers; the test proves nothing")
	}
	owner := func(label string) providers.Liveness {
		return map[string]providers.Liveness{"live": providers.OwnerLive, "dead": providers.OwnerDead}[label]
	}
	reaper := open(t, settings(envServer, set[envServer]))
	time.Sleep(expiry)
	removed, err := reaper.Reap(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != gone.ID {
		t.Errorf("reaped %v, want only %s", removed, gone.ID[:12])
	}
	if n := len(poolContainers(t, dead, set[envServer])); n != 0 {
		t.Errorf("%d warm containers of the dead server outlived their expiry", n)
	}
	if _, err := reaper.Get(ctx, kept.ID); err != nil {
		t.Errorf("the live owner's sandbox was reaped: %v", err)
	}
	if _, err := reaper.Get(ctx, gone.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("the dead owner's sandbox: %v", err)
	}
	// No claim outlives its container.
	vols, err := reaper.Client().VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", "mcp-sandbox.server="+set[envServer])})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols.Items {
		if v.Labels["mcp-sandbox.claim"] != kept.ID {
			t.Errorf("claim %s outlived its container", v.Name)
		}
	}
}

// An unclaimed warm container is no sandbox: Get, List and every call
// answer "not found", as for a container the driver did not make.
func TestUnclaimedWarmContainerIsNotASandbox(t *testing.T) {
	set := settings(docker.EnvPool, "1")
	p := open(t, set)
	waitWarm(t, p, 1)
	ctx := context.Background()
	ids := poolContainers(t, p, set[envServer])
	if len(ids) != 1 {
		t.Fatalf("%d warm containers", len(ids))
	}
	id := ids[0]
	other := open(t, settings(envServer, set[envServer]))
	if _, err := other.Get(ctx, id); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Get: %v", err)
	}
	if _, err := other.Exec(ctx, id, providers.ExecRequest{Command: "true"}); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Exec: %v", err)
	}
	if err := other.Destroy(ctx, id); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Destroy: %v", err)
	}
	list, err := other.List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range list {
		if sb.ID == id {
			t.Error("List includes an unclaimed warm container")
		}
	}
}
