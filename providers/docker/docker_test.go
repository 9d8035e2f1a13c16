package docker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
	"github.com/mcp-sandbox/mcp-sandbox/providers/providertest"
)

// testImage is built by .ci/setup-docker.sh (FROM scratch + busybox-static).
func testImage() string {
	if img := os.Getenv("MCP_SANDBOX_DOCKER_TEST_IMAGE"); img != "" {
		return img
	}
	return "mcp-sandbox-test:busybox"
}

// envServer keys the test's server ID in the maps settings returns.
const envServer = "MCP_SANDBOX_SERVER_ID"

// settings returns a config with the test image and a server name of its
// own, so the reaper tests never see other runs' containers; without a
// warm pool unless kv asks for one, so that each container a test sees is
// one it made.
func settings(kv ...string) map[string]string {
	m := map[string]string{
		docker.EnvImage: testImage(),
		envServer:       "test-" + randomSuffix(),
		docker.EnvPool:  "0",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func randomSuffix() string { return strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "") }

var engine struct {
	once sync.Once
	err  error
}

// open returns a driver on the engine, or skips when none can be had
// (fails under CI=true, where .ci/setup-docker.sh must have started one).
func open(t testing.TB, set map[string]string) *docker.Provider {
	t.Helper()
	engine.once.Do(func() {
		p, err := docker.New(context.Background(), providers.Config{Getenv: func(k string) string { return map[string]string{docker.EnvPool: "0"}[k] }})
		if err != nil {
			engine.err = err
			return
		}
		defer p.Close()
		if _, err := p.Client().ImageInspect(context.Background(), testImage()); err != nil {
			engine.err = errors.New("the test image " + testImage() + " is missing (run .ci/setup-docker.sh): " + err.Error())
		}
		removeStaleTestContainers(p)
	})
	if engine.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the docker tests cannot run: %v", engine.err)
		}
		t.Skipf("no usable Docker engine (run .ci/setup-docker.sh): %v", engine.err)
	}
	p, err := docker.New(context.Background(), providers.Config{Getenv: func(k string) string { return set[k] }, ServerID: set[envServer], Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// removeStaleTestContainers removes what killed test runs left behind: the
// containers of test servers ("test-...") created over ten minutes ago.
func removeStaleTestContainers(p *docker.Provider) {
	ctx := context.Background()
	list, err := p.Client().ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "mcp-sandbox.managed=true")})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		if strings.HasPrefix(c.Labels["mcp-sandbox.server"], "test-") && time.Since(time.Unix(c.Created, 0)) > 10*time.Minute {
			p.Client().ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
	// Claims on warm containers that are gone.
	vols, err := p.Client().VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", "mcp-sandbox.claim")})
	if err != nil {
		return
	}
	for _, v := range vols.Items {
		if !strings.HasPrefix(v.Labels["mcp-sandbox.server"], "test-") {
			continue
		}
		if _, err := p.Client().ContainerInspect(ctx, v.Labels["mcp-sandbox.claim"], client.ContainerInspectOptions{}); err != nil {
			p.Client().VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
		}
	}
}

func TestProvider(t *testing.T) {
	set := settings()
	providertest.Run(t, func(t *testing.T) providers.Provider { return open(t, set) })
}

func create(t *testing.T, p *docker.Provider, opts providers.CreateOptions) providers.Sandbox {
	t.Helper()
	sb, err := p.Create(context.Background(), opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	return sb
}

func sh(t *testing.T, p providers.Provider, id, cmd string) string {
	t.Helper()
	var out, errOut strings.Builder
	res, err := p.Exec(context.Background(), id, providers.ExecRequest{Command: cmd, Stdout: &out, Stderr: &errOut})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%q: exit %d, %v, stderr %q", cmd, res.ExitCode, err, errOut.String())
	}
	return out.String()
}

func TestHardenedByDefault(t *testing.T) {
	p := open(t, settings())
	sb := create(t, p, providers.CreateOptions{Name: "hard", Labels: map[string]string{providers.LabelSession: "s1"}})
	ins, err := p.Client().ContainerInspect(context.Background(), sb.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc, cfg := ins.Container.HostConfig, ins.Container.Config
	if hc.NetworkMode != "none" || hc.Privileged || !slices.Equal(hc.CapDrop, []string{"CAP_ALL"}) && !slices.Equal(hc.CapDrop, []string{"ALL"}) {
		t.Errorf("network %q, privileged %v, cap-drop %v", hc.NetworkMode, hc.Privileged, hc.CapDrop)
	}
	if !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
		t.Errorf("security options %v lack no-new-privileges", hc.SecurityOpt)
	}
	if hc.Memory != 1<<30 || hc.NanoCPUs != 1e9 || hc.PidsLimit == nil || *hc.PidsLimit != 512 || hc.Init == nil || !*hc.Init {
		t.Errorf("limits: memory %d, cpus %d, pids %v, init %v", hc.Memory, hc.NanoCPUs, hc.PidsLimit, hc.Init)
	}
	if len(hc.Binds) != 0 {
		t.Errorf("host mounts: %v", hc.Binds)
	}
	// The only mounts are the disk limit's: fresh, capped tmpfs volumes.
	for _, m := range hc.Mounts {
		if m.Type != "volume" || m.Source != "" || m.VolumeOptions == nil || m.VolumeOptions.DriverConfig == nil ||
			m.VolumeOptions.DriverConfig.Options["type"] != "tmpfs" || !strings.Contains(m.VolumeOptions.DriverConfig.Options["o"], "size=") {
			t.Errorf("mount %+v is not a capped tmpfs volume", m)
		}
	}
	for _, k := range []string{"mcp-sandbox.managed", "mcp-sandbox.server", "mcp-sandbox.created", "mcp-sandbox.expires", "mcp-sandbox.label.session"} {
		if cfg.Labels[k] == "" {
			t.Errorf("label %s missing: %v", k, cfg.Labels)
		}
	}
	// What the command sees: only the capabilities added back, no
	// privilege gain, a writable workdir.
	status := sh(t, p, sb.ID, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
	// CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) FSETID(4) KILL(5) SETGID(6) SETUID(7)
	if !strings.Contains(status, "CapEff:\t00000000000000fb") || !strings.Contains(status, "CapBnd:\t00000000000000fb") || !strings.Contains(status, "NoNewPrivs:\t1") {
		t.Errorf("process status:\n%s", status)
	}
	if out := sh(t, p, sb.ID, "touch made-here && pwd"); strings.TrimSpace(out) != "/workspace" {
		t.Errorf("workdir %q", out)
	}
}

func TestSettingsAreApplied(t *testing.T) {
	p := open(t, settings(docker.EnvMemory, "256m", docker.EnvCPUs, "0.5", docker.EnvPids, "64",
		docker.EnvCapAdd, "none", docker.EnvWorkdir, "/home/agent"))
	sb := create(t, p, providers.CreateOptions{})
	ins, err := p.Client().ContainerInspect(context.Background(), sb.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := ins.Container.HostConfig
	if hc.Memory != 256<<20 || hc.MemorySwap != 256<<20 || hc.NanoCPUs != 5e8 || *hc.PidsLimit != 64 || len(hc.CapAdd) != 0 {
		t.Errorf("memory %d swap %d cpus %d pids %d cap-add %v", hc.Memory, hc.MemorySwap, hc.NanoCPUs, *hc.PidsLimit, hc.CapAdd)
	}
	if sb.Workdir != "/home/agent" || strings.TrimSpace(sh(t, p, sb.ID, "pwd")) != "/home/agent" {
		t.Errorf("workdir %q", sb.Workdir)
	}
	if out := sh(t, p, sb.ID, "grep CapEff /proc/self/status"); !strings.Contains(out, "0000000000000000") {
		t.Errorf("with %s=none the command has capabilities: %s", docker.EnvCapAdd, out)
	}
}

func TestBadSettingsNameTheSetting(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{docker.EnvMemory, "lots"},
		{docker.EnvMemory, "1k"},
		{docker.EnvCPUs, "-1"},
		{docker.EnvPids, "two"},
		{docker.EnvWorkdir, "relative/dir"},
		{docker.EnvExpiry, "soon"},
		{docker.EnvCapAdd, "ALL"},
		{docker.EnvCapAdd, "SYS_ADMIN"},
		{docker.EnvDisk, "big"},
		{docker.EnvDisk, "100k"},
		{docker.EnvPool, "-1"},
		{docker.EnvPool, "17"},
		{docker.EnvPool, "some"},
	} {
		_, err := docker.New(context.Background(), providers.Config{Getenv: func(k string) string {
			if k == tc.key {
				return tc.value
			}
			return ""
		}})
		if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s=%q: want an invalid-argument error naming %s, got %v", tc.key, tc.value, tc.key, err)
		}
	}
}

func TestNoEngineIsOneClearError(t *testing.T) {
	sock := "unix://" + t.TempDir() + "/no-engine.sock"
	start := time.Now()
	_, err := docker.New(context.Background(), providers.Config{Getenv: func(k string) string {
		if k == "DOCKER_HOST" {
			return sock
		}
		return ""
	}})
	if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "DOCKER_HOST") {
		t.Fatalf("want an unavailable error naming %s and DOCKER_HOST, got %v", sock, err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("took %v to give up", time.Since(start))
	}
}

func TestImages(t *testing.T) {
	p := open(t, settings(docker.EnvImage, "mcp-sandbox-test-absent:never"))
	ctx := context.Background()

	// The configured default is missing and no registry has it (or none
	// is reachable): a mistake to fix, not something that may pass.
	_, err := p.Create(ctx, providers.CreateOptions{})
	if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), "mcp-sandbox-test-absent:never") || !strings.Contains(err.Error(), docker.EnvImage) {
		t.Errorf("missing image: want an invalid-argument error naming the image and %s, got %v", docker.EnvImage, err)
	}
	_, err = p.Create(ctx, providers.CreateOptions{Image: "Not A Valid:Ref"})
	if !errors.Is(err, providers.ErrInvalidArgument) {
		t.Errorf("invalid reference: want invalid argument, got %v", err)
	}
	// The image given at create overrides the default.
	sb := create(t, p, providers.CreateOptions{Image: testImage()})
	if sb.Image != testImage() {
		t.Errorf("sandbox image %q, want %q", sb.Image, testImage())
	}
	if got, err := p.Get(ctx, sb.ID); err != nil || got.Image != testImage() {
		t.Errorf("Get: %+v, %v", got, err)
	}
	// Nothing is left behind by the failed creates.
	list, err := p.Client().ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "mcp-sandbox.server="+serverOf(t, p, sb.ID))})
	if err != nil || len(list.Items) != 1 {
		t.Errorf("containers of this server: %d, %v; want just the one created", len(list.Items), err)
	}
}

func serverOf(t *testing.T, p *docker.Provider, id string) string {
	ins, err := p.Client().ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ins.Container.Config.Labels["mcp-sandbox.server"]
}

func TestNonRootImageUser(t *testing.T) {
	p := open(t, settings())
	ctx := context.Background()
	// An image whose commands run as nobody: derived from the test image.
	base := create(t, p, providers.CreateOptions{})
	tag := "mcp-sandbox-test-nobody:" + randomSuffix()
	if _, err := p.Client().ContainerCommit(ctx, base.ID, client.ContainerCommitOptions{Reference: tag, Changes: []string{"USER 65534:65534"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Client().ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true}) })

	sb := create(t, p, providers.CreateOptions{Image: tag})
	if out := sh(t, p, sb.ID, "id -u; touch by-command && echo ok"); out != "65534\nok\n" {
		t.Errorf("as nobody in the workdir: %q", out)
	}
	if err := p.WriteFile(ctx, sb.ID, "sub/by-api.txt", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if out := sh(t, p, sb.ID, "stat -c '%u %a' sub sub/by-api.txt && echo more >> sub/by-api.txt && echo ok"); out != "65534 755\n65534 644\nok\n" {
		t.Errorf("files written through the API: %q", out)
	}
}

func TestForeignContainersAreNotFound(t *testing.T) {
	p := open(t, settings())
	ctx := context.Background()
	name := "mcp-sandbox-foreign-" + randomSuffix()
	res, err := p.Client().ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Image: testImage()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Client().ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})
	for _, id := range []string{res.ID, res.ID[:12], name} {
		if _, err := p.Get(ctx, id); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("Get(%s): want not found, got %v", id, err)
		}
		if err := p.Destroy(ctx, id); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("Destroy(%s): want not found, got %v", id, err)
		}
		if err := p.WriteFile(ctx, id, "x", []byte("x"), 0); !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("WriteFile(%s): want not found, got %v", id, err)
		}
	}
	if _, err := p.Client().ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("the foreign container is gone: %v", err)
	}
	list, err := p.List(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range list {
		if sb.ID == res.ID {
			t.Error("List includes a container this driver did not make")
		}
	}
}

func TestReap(t *testing.T) {
	ctx := context.Background()
	set := settings()
	p := open(t, set) // the default expiry: a day
	short := open(t, settings(envServer, set[envServer], docker.EnvExpiry, "1ms"))
	owner := func(label string) providers.Liveness {
		return map[string]providers.Liveness{"live": providers.OwnerLive, "dead": providers.OwnerDead}[label]
	}
	made := func(by *docker.Provider, session string, keep bool) providers.Sandbox {
		labels := map[string]string{providers.LabelSession: session}
		if keep {
			labels[providers.LabelKeep] = "true"
		}
		return create(t, by, providers.CreateOptions{Labels: labels})
	}
	var (
		deadOwner      = made(p, "dead", false)
		unknownOwner   = made(p, "elsewhere", false)
		liveOwner      = made(p, "live", false)
		kept           = made(p, "dead", true)
		expired        = made(short, "elsewhere", false)
		keptExpired    = made(short, "dead", true)
		liveExpired    = made(short, "live", false)
		foreignDead    = made(open(t, settings()), "dead", false)
		wantGone       = []providers.Sandbox{deadOwner, expired, keptExpired}
		wantKept       = []providers.Sandbox{unknownOwner, liveOwner, kept, liveExpired, foreignDead}
		wantGoneLater  = []providers.Sandbox{unknownOwner, kept}
		wantKeptLonger = []providers.Sandbox{liveOwner, liveExpired, foreignDead}
	)
	time.Sleep(10 * time.Millisecond)

	check := func(step string, removed []string, err error, gone, kept []providers.Sandbox) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		var want []string
		for _, sb := range gone {
			want = append(want, sb.ID)
			if _, err := p.Get(ctx, sb.ID); !errors.Is(err, providers.ErrNotFound) {
				t.Errorf("%s: %s (%v) survived the reaper: %v", step, sb.ID[:12], sb.Labels, err)
			}
		}
		slices.Sort(want)
		slices.Sort(removed)
		if !slices.Equal(removed, want) {
			t.Errorf("%s: reaped %v, want %v", step, removed, want)
		}
		for _, sb := range kept {
			if _, err := p.Get(ctx, sb.ID); err != nil {
				t.Errorf("%s: %s (%v) was reaped: %v", step, sb.ID[:12], sb.Labels, err)
			}
		}
	}
	removed, err := p.Reap(ctx, owner)
	check("a day's expiry", removed, err, wantGone, wantKept)
	// Lowering the expiry reaches sandboxes labelled with the longer one.
	removed, err = short.Reap(ctx, owner)
	check("the expiry lowered", removed, err, wantGoneLater, wantKeptLonger)
}

func TestStoppedSandboxIsRestartedOnExec(t *testing.T) {
	// Files on the container's own layer; the disk limit's in-memory
	// workdir does not outlive a stop (TestDiskLimitEmptiedByRestart).
	p := open(t, settings(docker.EnvDisk, "none"))
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	if err := p.WriteFile(ctx, sb.ID, "kept.txt", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	timeout := 0
	if _, err := p.Client().ContainerStop(ctx, sb.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if out := sh(t, p, sb.ID, "cat kept.txt"); out != "kept" {
		t.Errorf("after a stop, the sandbox reads %q", out)
	}
}

// ListFiles walks the tree from metadata in the container, and reads the
// archive only in an image without the tools; both must give the same
// answer, names with newlines and spaces included.
func TestListFilesBothWays(t *testing.T) {
	p := open(t, settings())
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	byArchive, byFind := p, p
	sh(t, byArchive, sb.ID, `mkdir -p t/b/d t/e t/b-x && printf x > t/a && printf yy > t/b/c && printf z > t/b/d/f &&
		printf 1 > t/.hidden && printf 2 > 't/with space' && printf 3 > "t/new
line" && printf 4 > "t/x
81a4 9 9 forged" && ln -s a t/link && chmod 750 t/b && head -c 1000 /dev/zero > t/b-x/k`)
	for _, tc := range []struct{ depth, limit int }{{1, 100}, {2, 100}, {5, 100}, {5, 4}, {2, 3}, {1, 1}} {
		a, at, err := byArchive.ListFilesByArchive(ctx, sb.ID, "t", tc.depth, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		f, ft, err := byFind.ListFiles(ctx, sb.ID, "t", tc.depth, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if at != ft || len(a) != len(f) {
			t.Errorf("depth %d limit %d: archive %v (truncated %v), find %v (truncated %v)", tc.depth, tc.limit, paths(a), at, paths(f), ft)
			continue
		}
		for i := range a {
			x, y := a[i], f[i]
			if x.Path != y.Path || x.Type != y.Type || x.Mode != y.Mode || !x.ModTime.Equal(y.ModTime) || (x.Type == providers.TypeFile && x.Size != y.Size) {
				t.Errorf("depth %d limit %d: archive %+v, find %+v", tc.depth, tc.limit, x, y)
			}
		}
	}
	all, _, _ := byFind.ListFiles(ctx, sb.ID, "t", 1, 100)
	want := []string{".hidden", "a", "b", "b-x", "e", "link", "new\nline", "with space", "x\n81a4 9 9 forged"}
	if got := paths(all); !slices.Equal(got, want) {
		t.Errorf("find listing %q, want %q", got, want)
	}
}

// Listing reads metadata only: a directory holding a huge sparse file
// lists at once, whatever the file's size.
func TestListFilesHugeSparseFile(t *testing.T) {
	p := open(t, settings())
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	const size = 100 << 30 // 100 GiB, of which nothing is on disk
	sh(t, p, sb.ID, fmt.Sprintf("mkdir -p data && truncate -s %d data/huge.bin && touch zz", size))
	start := time.Now()
	ents, truncated, err := p.ListFiles(ctx, sb.ID, ".", 2, 100)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(ents); truncated || !slices.Equal(got, []string{"data", "data/huge.bin", "zz"}) || ents[1].Size != size {
		t.Errorf("listing %v truncated=%v entries %+v", got, truncated, ents)
	}
	if took > 5*time.Second {
		t.Errorf("listing a directory with a %d-byte sparse file took %v; it must not read the file", size, took)
	}
	t.Logf("listed a directory holding a 100 GiB sparse file in %v", took)
}

func paths(ents []providers.FileInfo) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Path)
	}
	return out
}

// A command that exhausts the process limit is still stopped by its
// timeout, and the sandbox is usable afterwards.
func TestForkBombIsStopped(t *testing.T) {
	for _, tc := range []struct{ name, bomb string }{
		{"dies back", "b() { b | b & }; b; sleep 1000"},       // forks to the limit, then shrinks
		{"holds every slot", "while :; do sleep 1000 & done"}, // not even a kill script can start
	} {
		t.Run(tc.name, func(t *testing.T) { testForkBomb(t, tc.bomb) })
	}
}

func testForkBomb(t *testing.T, bomb string) {
	// Files on the container's own layer, which the last-resort restart
	// keeps (the disk limit's in-memory workdir would not).
	p := open(t, settings(docker.EnvPids, "64", docker.EnvDisk, "none"))
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	h := sh(t, p, sb.ID, "echo kept > kept.txt; echo ok")
	if h != "ok\n" {
		t.Fatal(h)
	}
	start := time.Now()
	res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: bomb, Timeout: time.Second})
	if err != nil || (!res.TimedOut && res.ExitCode == 0) {
		t.Fatalf("got %+v, %v; want a timeout or a failed fork", res, err)
	}
	// The kill has 30 s of its own (a kill script, else a restart); a
	// bomb churning both cores of a small machine slows each step.
	if took := time.Since(start); took > 35*time.Second {
		t.Errorf("stopping the command took %v", took)
	}
	if !res.TimedOut {
		// On a loaded machine the bomb's own shell can hit the pids limit
		// and end before the timeout ("can't fork"). What it started then
		// holds the sandbox's process slots, as any background child
		// would, until it ends; the limit still contained it, and
		// destroying the sandbox must still work at once.
		dstart := time.Now()
		if err := p.Destroy(ctx, sb.ID); err != nil {
			t.Fatalf("destroy after a fork bomb: %v", err)
		}
		if took := time.Since(dstart); took > 20*time.Second {
			t.Errorf("destroying the sandbox took %v", took)
		}
		return
	}
	if out := sh(t, p, sb.ID, "cat kept.txt"); out != "kept\n" {
		t.Errorf("after the timeout the sandbox reads %q", out)
	}
	// Each exec is a session of its own: apart from this check's session,
	// only the container's init and its idle sleep may be left.
	// While the killed bomb's processes are still being torn down, the
	// check itself may find no free process slot: it then asks again.
	n := -1
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var out strings.Builder
		res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Stdout: &out,
			Command: `own=$(cut -d' ' -f6 /proc/$$/stat); cat /proc/[0-9]*/stat 2>/dev/null | awk -v s="$own" '$6 != s' | wc -l`})
		if err != nil || res.ExitCode != 0 {
			continue
		}
		fmt.Sscan(out.String(), &n)
		if n == 2 {
			return
		}
	}
	t.Errorf("%d processes outside this check after the timeout, want only init and its idle sleep", n)
}

func testLogger() *slog.Logger {
	if os.Getenv("DEBUGLOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
