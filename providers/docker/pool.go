package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// The warm pool. Making a container costs the engine half a second before
// a sandbox's first command can run; a pool makes a few ahead, per image,
// hardened and limited as any sandbox, and a create takes one by claiming
// it (claim.go), so that the session's name, labels and env go on the
// claim. A container is interchangeable with the pool of any server with
// the same ID, image and settings (the pool label is their fingerprint),
// so two servers may race for one: the claim decides. Each server keeps its
// own pool full in the background and removes it when it stops; a pooled
// container expires soon (poolLifetime), so the reaper of a server that
// died without removing its pool takes it like any other expired container.

const (
	labelPool   = "mcp-sandbox.pool"    // fingerprint of the image and settings it was made with
	labelPoolBy = "mcp-sandbox.pool.by" // the server process whose pool it is
	// poolNamePrefix names pooled containers ready to be handed out
	// (warmingNamePrefix those being made); a hand-out renames its
	// container like a cold one, so listing by name finds the pool.
	poolNamePrefix    = "mcp-sandbox-pool-"
	warmingNamePrefix = "mcp-sandbox-warming-"
	// poolLifetime is a pooled container's expiry (or the sandboxes' own,
	// if shorter): how long a dead server's pool may stay.
	// A live server replaces its own in the last third of their life.
	poolLifetime = 10 * time.Minute
	poolCheck    = time.Minute // how often a server checks its pool besides after a take
	// maxPoolImages bounds how many images are kept warm: the default and
	// the first others sandboxes were made from.
	maxPoolImages = 4
	maxPoolSize   = 16
)

type containerSummary = container.Summary

// pool keeps a server's warm containers.
type pool struct {
	p        *Provider
	size     int
	instance string // this server process, on each container it makes

	mu     sync.Mutex
	images []string // kept warm, the default first

	wake   chan struct{}
	stop   context.CancelFunc
	ctx    context.Context
	done   chan struct{}
	closed sync.Once
}

func newPool(p *Provider, size int) *pool {
	ctx, stop := context.WithCancel(context.Background())
	w := &pool{p: p, size: size, instance: randomHex(8), images: []string{p.set.image},
		wake: make(chan struct{}, 1), ctx: ctx, stop: stop, done: make(chan struct{})}
	go w.run()
	return w
}

// poolKey is the fingerprint of what makes two containers interchangeable:
// the image and every setting a create applies.
func (p *Provider) poolKey(imageID, user string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%d\x00%d\x00%s\x00%s\x00%d\x00%d",
		imageID, user, p.set.network, p.set.memory, p.set.nanoCPUs, p.set.pids,
		p.set.workdir, strings.Join(p.set.capAdd, ","), p.set.disk, p.diskKind(context.Background()))
	return hex.EncodeToString(h.Sum(nil))[:24]
}

func (w *pool) lifetime() time.Duration { return min(poolLifetime, w.p.set.expiry) }

// keepWarm adds image to those kept warm, up to maxPoolImages.
func (w *pool) keepWarm(image string) {
	w.mu.Lock()
	added := !slices.Contains(w.images, image) && len(w.images) < maxPoolImages
	if added {
		w.images = append(w.images, image)
	}
	w.mu.Unlock()
	if added {
		w.poke()
	}
}

func (w *pool) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take hands out a pooled container made from image with key, or says
// there is none.
func (w *pool) take(ctx context.Context, image, key string, opts providers.CreateOptions) (providers.Sandbox, bool) {
	p := w.p
	ready, err := w.ready(ctx, key, "")
	if err != nil {
		p.log.Debug("no warm container: cannot list the pool", "err", err)
		return providers.Sandbox{}, false
	}
	now := time.Now().UTC()
	claim := map[string]string{
		labelPurpose: claimSandbox,
		labelName:    opts.Name,
		labelCreated: now.Format(time.RFC3339Nano),
		labelExpires: now.Add(p.set.expiry).Format(time.RFC3339Nano),
	}
	if env := encodeEnv(opts.Env); env != "" {
		claim[labelEnv] = env
	}
	for k, v := range opts.Labels {
		claim[userLabelPrefix+k] = v
	}
	for _, c := range ready {
		won, err := p.claim(ctx, c.ID, claimSandbox, claim)
		if err != nil {
			p.log.Debug("no warm container: cannot claim one", "err", err)
			return providers.Sandbox{}, false
		}
		if !won {
			continue // another server's, or being removed
		}
		p.owned.Store(c.ID, box{workdir: c.Labels[labelWorkdir], env: opts.Env, claimed: true})
		// The channel the pool opened serves a sandbox without env; one
		// with env gets its own, opened now: the first command is not long
		// in coming. Its pool name goes, so the pool no longer lists it.
		open := func() {}
		if len(opts.Env) > 0 || !p.channelOpen(c.ID) {
			p.closeChannel(c.ID)
			open = p.openEarly(c.ID)
		}
		go w.handedOut(c.ID, open)
		p.log.Info("sandbox created", "sandbox", c.ID[:12], "image", image, "warm", true)
		labels, _ := sandboxLabels(c.Labels, claim)
		return p.sandbox(c.ID, image, labels), true
	}
	w.poke()
	return providers.Sandbox{}, false
}

// ready lists the running pooled containers with key that are ready to be
// handed out (of the server process by, or any), the oldest first: they
// are the nearest to being replaced.
func (w *pool) ready(ctx context.Context, key, by string) ([]containerSummary, error) {
	p := w.p
	filters := make(client.Filters).Add("label", labelManaged+"=true", labelServer+"="+p.set.server, labelPool+"="+key).
		Add("name", poolNamePrefix).Add("status", "running")
	if by != "" {
		filters.Add("label", labelPoolBy+"="+by)
	}
	res, err := p.cli.ContainerList(ctx, client.ContainerListOptions{Filters: filters})
	if err != nil {
		return nil, err
	}
	out := res.Items[:0]
	for _, c := range res.Items {
		if c.Labels[labelServer] == p.set.server && c.Labels[labelPool] == key {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b containerSummary) int { return int(a.Created - b.Created) })
	return out, nil
}

// handedOut renames a claimed container out of the pool and opens its
// channel, then has the pool made full again.
func (w *pool) handedOut(id string, openChannel func()) {
	p := w.p
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	openChannel()
	if _, err := p.cli.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: "mcp-sandbox-" + randomHex(6)}); err != nil {
		p.log.Debug("a handed-out container keeps its pool name", "sandbox", id[:12], "err", err)
	}
	w.poke()
}

func (w *pool) run() {
	defer close(w.done)
	tick := time.NewTicker(min(poolCheck, max(w.lifetime()/3, 100*time.Millisecond)))
	defer tick.Stop()
	for {
		w.mu.Lock()
		images := slices.Clone(w.images)
		w.mu.Unlock()
		for _, image := range images {
			if err := w.fill(image); err != nil && w.ctx.Err() == nil {
				w.p.log.Warn("cannot keep a warm container", "image", image, "err", err)
			}
		}
		select {
		case <-w.ctx.Done():
			return
		case <-w.wake:
		case <-tick.C:
		}
	}
}

// fill replaces this server's pooled containers of image that are near
// their expiry, or stopped, and makes the pool full.
func (w *pool) fill(image string) error {
	p, ctx := w.p, w.ctx
	// A pool pulls nothing: an image comes with the first create that
	// needs it.
	user, imageID, present, err := p.imageUser(ctx, image)
	if err != nil || !present {
		return err
	}
	key := p.poolKey(imageID, user)
	have := 0
	for _, c := range w.own(ctx, key) {
		expires := p.expiry(c.Labels, time.Unix(c.Created, 0))
		if c.State == "running" && time.Until(expires) > w.lifetime()/3 {
			have++
			continue
		}
		w.retire(ctx, c.ID)
	}
	for ; have < w.size && ctx.Err() == nil; have++ {
		if err := w.make(ctx, image, user, imageID, key); err != nil {
			return err
		}
	}
	return nil
}

// own lists this server process's unclaimed-looking pooled containers
// with key ("" for any).
func (w *pool) own(ctx context.Context, key string) []containerSummary {
	p := w.p
	filters := make(client.Filters).Add("label", labelManaged+"=true", labelServer+"="+p.set.server, labelPoolBy+"="+w.instance).
		Add("name", poolNamePrefix, warmingNamePrefix)
	if key != "" {
		filters.Add("label", labelPool+"="+key)
	}
	res, err := p.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil
	}
	out := res.Items[:0]
	for _, c := range res.Items {
		// A claimed one whose hand-out did not rename it (its server
		// stopped first) is a sandbox: it gets its sandbox name now.
		if claim, ok, err := p.claimOf(ctx, c.ID); err == nil && ok {
			if claim[labelPurpose] == claimSandbox {
				p.cli.ContainerRename(ctx, c.ID, client.ContainerRenameOptions{NewName: "mcp-sandbox-" + randomHex(6)})
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// make adds one container to the pool, with the helper in place.
func (w *pool) make(ctx context.Context, image, user, imageID, key string) error {
	p := w.p
	now := time.Now().UTC()
	labels := map[string]string{
		labelManaged: "true",
		labelServer:  p.set.server,
		labelCreated: now.Format(time.RFC3339Nano),
		labelExpires: now.Add(w.lifetime()).Format(time.RFC3339Nano),
		labelWorkdir: p.set.workdir,
		labelPool:    key,
		labelPoolBy:  w.instance,
	}
	name := randomHex(6)
	id, err := p.startContainer(ctx, warmingNamePrefix+name, image, user, imageID, nil, labels)
	if err != nil {
		return err
	}
	// The helper goes in now rather than at the sandbox's first command,
	// and serves a channel, for a sandbox without env. Until it is claimed
	// the container is no sandbox: it is reachable for this alone.
	p.owned.Store(id, box{workdir: p.set.workdir})
	if helper := p.Supervisor.HelperPath(ctx, id); helper != "" {
		p.openEarly(id)()
	}
	p.owned.Delete(id)
	// Ready: creates may take it now.
	if _, err := p.cli.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: poolNamePrefix + name}); err != nil {
		w.retire(context.WithoutCancel(ctx), id)
		return p.apiErr(id, "make a warm container ready", err)
	}
	return nil
}

// retire removes a pooled container of this server's, unless a hand-out
// claims it first.
func (w *pool) retire(ctx context.Context, id string) {
	p := w.p
	if won, err := p.claim(ctx, id, claimRemoval, nil); err != nil || !won {
		return
	}
	p.closeChannel(id)
	p.remove(id)
	p.dropClaim(id)
}

// close stops the pool and removes what is left of it.
func (w *pool) close() {
	w.closed.Do(func() {
		w.stop()
		<-w.done
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		for _, c := range w.own(ctx, "") {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.retire(ctx, c.ID)
			}()
		}
		wg.Wait()
	})
}
