package modal

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// app returns the ID of the configured app, creating it if missing.
func (p *Provider) app(ctx context.Context) (string, error) {
	p.mu.Lock()
	id := p.appID
	p.mu.Unlock()
	if id != "" {
		return id, nil
	}
	var res *pb.AppGetOrCreateResponse
	_, err := p.retry(ctx, "AppGetOrCreate", func(ctx context.Context) (err error) {
		res, err = p.cp.AppGetOrCreate(ctx, &pb.AppGetOrCreateRequest{AppName: p.o.App, EnvironmentName: p.o.Environment,
			ObjectCreationType: pb.ObjectCreationType_OBJECT_CREATION_TYPE_CREATE_IF_MISSING})
		return err
	})
	if err != nil {
		return "", p.typed(ctx, "", fmt.Sprintf("get or create the Modal app %q (%s)", p.o.App, EnvApp), err)
	}
	p.mu.Lock()
	p.appID = res.GetAppId()
	p.mu.Unlock()
	return res.GetAppId(), nil
}

// image returns the ID of an image built from a registry reference, waiting
// for the build as the SDK does.
func (p *Provider) image(ctx context.Context, appID, ref string) (string, error) {
	p.mu.Lock()
	id := p.images[ref]
	p.mu.Unlock()
	if id != "" {
		return id, nil
	}
	what := fmt.Sprintf("build the Modal image %q", ref)
	var res *pb.ImageGetOrCreateResponse
	_, err := p.retry(ctx, "ImageGetOrCreate", func(ctx context.Context) (err error) {
		res, err = p.cp.ImageGetOrCreate(ctx, &pb.ImageGetOrCreateRequest{AppId: appID,
			Image: &pb.Image{DockerfileCommands: []string{"FROM " + ref}}})
		return err
	})
	if err != nil {
		return "", p.typed(ctx, "", what, err)
	}
	result := res.GetResult()
	lastEntry := ""
	for result.GetStatus() == pb.GenericResult_GENERIC_STATUS_UNSPECIFIED {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		stream, err := p.cp.ImageJoinStreaming(ctx, &pb.ImageJoinStreamingRequest{ImageId: res.GetImageId(), Timeout: 55, LastEntryId: lastEntry})
		if err != nil {
			return "", p.typed(ctx, "", what, err)
		}
		for {
			item, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !transient(status.Code(err)) {
					return "", p.typed(ctx, "", what, err)
				}
				break // rejoin from the last entry
			}
			if item.GetEntryId() != "" {
				lastEntry = item.GetEntryId()
			}
			if item.GetResult().GetStatus() != pb.GenericResult_GENERIC_STATUS_UNSPECIFIED {
				result = item.GetResult()
				break
			}
		}
	}
	if result.GetStatus() != pb.GenericResult_GENERIC_STATUS_SUCCESS {
		return "", providers.Errorf(providers.ErrInvalidArgument, "%s: the build ended with %s: %s; check the image reference (%s)",
			what, result.GetStatus(), result.GetException(), EnvImage)
	}
	p.mu.Lock()
	p.images[ref] = res.GetImageId()
	p.mu.Unlock()
	return res.GetImageId(), nil
}

func tagsOf(m map[string]string) []*pb.SandboxTag {
	out := make([]*pb.SandboxTag, 0, len(m))
	for k, v := range m {
		out = append(out, &pb.SandboxTag{TagName: k, TagValue: v})
	}
	return out
}

func tagMap(tags []*pb.SandboxTag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.GetTagName()] = t.GetTagValue()
	}
	return m
}

func (p *Provider) Create(ctx context.Context, opts providers.CreateOptions) (providers.Sandbox, error) {
	if err := providers.ValidateEnv(opts.Env); err != nil {
		return providers.Sandbox{}, err
	}
	tags := map[string]string{}
	for k, v := range opts.Labels {
		if strings.HasPrefix(k, tagPrefix) {
			return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument, "label %q uses the reserved prefix %q", k, tagPrefix)
		}
		tags[k] = v
	}
	ref := opts.Image
	if ref == "" {
		ref = p.o.Image
	}
	// Images cost build time and money and are pulled from wherever the
	// reference points: which ones an agent may start is the operator's call.
	if policy := providers.NewImagePolicy(p.o.Image, p.o.AllowedImages); !policy.Allowed(ref) {
		return providers.Sandbox{}, providers.Errorf(providers.ErrInvalidArgument,
			"image %q is not allowed on this server: the operator allows the default image %q and images matching %s (%q); omit image to use the default",
			ref, p.o.Image, EnvAllowed, policy.Patterns())
	}
	appID, err := p.app(ctx)
	if err != nil {
		return providers.Sandbox{}, err
	}
	imageID, err := p.image(ctx, appID, ref)
	if err != nil {
		return providers.Sandbox{}, err
	}
	nonce := make([]byte, 12)
	crand.Read(nonce)
	created := time.Now().UTC()
	tags[tagServer] = p.o.ServerID
	tags[tagName] = opts.Name
	tags[tagImage] = ref
	tags[tagCreated] = created.Format(time.RFC3339Nano)
	tags[tagExpires] = created.Add(p.o.Expiry).Format(time.RFC3339Nano)
	tags[tagNonce] = hex.EncodeToString(nonce)
	req := &pb.SandboxCreateV2Request{
		AppId: appID,
		Definition: &pb.Sandbox{
			ImageId:        imageID,
			TimeoutSecs:    uint32(p.o.Timeout / time.Second),
			Resources:      &pb.Resources{GpuConfig: &pb.GPUConfig{}},
			NetworkAccess:  &pb.NetworkAccess{NetworkAccessType: pb.NetworkAccess_OPEN},
			OpenPortsOneof: &pb.Sandbox_OpenPorts{OpenPorts: &pb.PortSpecs{}},
		},
		Tags: tagsOf(tags),
	}
	if len(opts.Env) > 0 {
		req.SecretSources = []*pb.SecretSource{{Source: &pb.SecretSource_Env{Env: &pb.StringMap{Contents: opts.Env}}}}
	}

	// A create is not idempotent: an attempt that failed may still have made
	// a sandbox whose answer was lost. Each is tagged with a nonce, and
	// whatever carries it is terminated before retrying or giving up.
	var res *pb.SandboxCreateV2Response
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, p.o.CreateTimeout)
		res, err = p.cp.SandboxCreateV2(actx, req)
		cancel()
		if err == nil {
			break
		}
		p.cleanupNonce(ctx, tags[tagNonce])
		wait, throttled := retryAfter(err)
		if !throttled {
			wait = p.o.RetryBase << (attempt - 1)
		}
		if ctx.Err() != nil || (!throttled && !transient(status.Code(err))) || attempt > p.o.Retries {
			return providers.Sandbox{}, p.typed(ctx, "", fmt.Sprintf("create a Modal sandbox from image %q", ref), err)
		}
		p.log.Debug("modal: retrying create", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return providers.Sandbox{}, ctx.Err()
		case <-time.After(wait):
		}
	}

	c := &sandboxConn{id: res.GetSandboxId(), taskID: res.GetTaskId()}
	if a := res.GetCommandRouterAccess(); a != nil && a.GetUrl() != "" {
		c.setAccess(a.GetJwt(), a.GetUrl())
	}
	if err := p.ready(ctx, c); err != nil {
		// The sandbox exists but is unusable: end it rather than leak it.
		kctx, cancel := detached(ctx)
		defer cancel()
		if derr := p.terminate(kctx, c.id); derr != nil && !errors.Is(derr, providers.ErrNotFound) {
			p.log.Warn("modal: could not terminate a sandbox whose start failed", "sandbox", c.id, "err", derr)
		}
		return providers.Sandbox{}, err
	}
	p.remember(c)
	return p.sandboxFrom(c.id, created, tags, c.workdir), nil
}

// cleanupNonce terminates every sandbox made by a failed create attempt.
func (p *Provider) cleanupNonce(ctx context.Context, nonce string) {
	ctx, cancel := detached(ctx)
	defer cancel()
	found, err := p.list(ctx, map[string]string{tagNonce: nonce})
	if err != nil {
		p.log.Warn("modal: cannot check for a sandbox left by a failed create", "err", err)
		return
	}
	for _, s := range found {
		if err := p.terminate(ctx, s.GetId()); err != nil && !errors.Is(err, providers.ErrNotFound) {
			p.log.Warn("modal: cannot terminate a sandbox left by a failed create", "sandbox", s.GetId(), "err", err)
		}
	}
}

// sandboxFrom builds the portable description from the tags.
func (p *Provider) sandboxFrom(id string, created time.Time, tags map[string]string, workdir string) providers.Sandbox {
	sb := providers.Sandbox{ID: id, Provider: Name, Name: tags[tagName], Image: tags[tagImage], Workdir: workdir, CreatedAt: created, Labels: map[string]string{}}
	for k, v := range tags {
		if !strings.HasPrefix(k, tagPrefix) {
			sb.Labels[k] = v
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, tags[tagCreated]); err == nil {
		sb.CreatedAt = t
	}
	return sb
}

// finished reports whether Modal says the sandbox has ended.
func (p *Provider) finished(ctx context.Context, id string) (bool, error) {
	var res *pb.SandboxWaitResponse
	_, err := p.retry(ctx, "SandboxWaitV2", func(ctx context.Context) (err error) {
		res, err = p.cp.SandboxWaitV2(ctx, &pb.SandboxWaitRequest{SandboxId: id})
		return err
	})
	if err != nil {
		return false, p.typed(ctx, id, "get sandbox "+id, err)
	}
	return res.GetResult().GetStatus() != pb.GenericResult_GENERIC_STATUS_UNSPECIFIED, nil
}

func (p *Provider) Get(ctx context.Context, id string) (providers.Sandbox, error) {
	if err := checkID(id); err != nil {
		return providers.Sandbox{}, err
	}
	var res *pb.SandboxTagsGetResponse
	_, err := p.retry(ctx, "SandboxTagsGetV2", func(ctx context.Context) (err error) {
		res, err = p.cp.SandboxTagsGetV2(ctx, &pb.SandboxTagsGetRequest{SandboxId: id})
		return err
	})
	if err != nil {
		return providers.Sandbox{}, p.typed(ctx, id, "get sandbox "+id, err)
	}
	tags := tagMap(res.GetTags())
	if _, ours := tags[tagServer]; !ours {
		return providers.Sandbox{}, notFound(id) // not made by this project
	}
	if done, err := p.finished(ctx, id); err != nil {
		return providers.Sandbox{}, err
	} else if done {
		p.forget(id)
		return providers.Sandbox{}, notFound(id)
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.Sandbox{}, err
	}
	return p.sandboxFrom(id, time.Time{}, tags, c.workdir), nil
}

// list pages through the app's running sandboxes whose tags include match,
// newest first.
func (p *Provider) list(ctx context.Context, match map[string]string) ([]*pb.SandboxInfo, error) {
	appID, err := p.app(ctx)
	if err != nil {
		return nil, err
	}
	var all []*pb.SandboxInfo
	before := 0.0
	for page := 0; page < 100; page++ { // at most 10,000 sandboxes
		var res *pb.SandboxListResponse
		_, err := p.retry(ctx, "SandboxListV2", func(ctx context.Context) (err error) {
			res, err = p.cp.SandboxListV2(ctx, &pb.SandboxListRequest{AppId: appID, BeforeTimestamp: before, Tags: tagsOf(match)})
			return err
		})
		if err != nil {
			return nil, p.typed(ctx, "", "list Modal sandboxes", err)
		}
		if len(res.GetSandboxes()) == 0 {
			break
		}
		all = append(all, res.GetSandboxes()...)
		before = res.GetSandboxes()[len(res.GetSandboxes())-1].GetCreatedAt()
	}
	return all, nil
}

// List returns the sandboxes this project made (any server) whose labels
// include match.
func (p *Provider) List(ctx context.Context, match map[string]string) ([]providers.Sandbox, error) {
	found, err := p.list(ctx, match)
	if err != nil {
		return nil, err
	}
	out := make([]providers.Sandbox, 0, len(found))
	for _, s := range found {
		tags := tagMap(s.GetTags())
		if _, ours := tags[tagServer]; !ours {
			continue
		}
		workdir := ""
		if c := p.cached(s.GetId()); c != nil {
			workdir = c.workdir
		}
		created := time.Unix(0, int64(s.GetCreatedAt()*1e9)).UTC()
		out = append(out, p.sandboxFrom(s.GetId(), created, tags, workdir))
	}
	return out, nil
}

// terminate ends a sandbox. A sandbox that had already ended is not found,
// unless an earlier attempt of this call ended it and its answer was lost.
func (p *Provider) terminate(ctx context.Context, id string) error {
	var res *pb.SandboxTerminateResponse
	attempts, err := p.retry(ctx, "SandboxTerminateV2", func(ctx context.Context) (err error) {
		res, err = p.cp.SandboxTerminateV2(ctx, &pb.SandboxTerminateRequest{SandboxId: id})
		return err
	})
	if err != nil {
		return p.typed(ctx, id, "destroy sandbox "+id, err)
	}
	if res.GetExistingResult().GetStatus() != pb.GenericResult_GENERIC_STATUS_UNSPECIFIED && attempts == 1 {
		return notFound(id)
	}
	return nil
}

func (p *Provider) Destroy(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	p.forget(id)
	return p.terminate(ctx, id)
}

var _ providers.Reaper = (*Provider)(nil)

// Reap terminates this server's sandboxes (tag mcp-sandbox.server) that
// providers.Reapable lets go: at once when their owner is known to be gone,
// after their expiry (tag mcp-sandbox.expires) when it cannot be known,
// never while it is live. Safe to run from several replicas at once.
func (p *Provider) Reap(ctx context.Context, owner func(label string) providers.Liveness) ([]string, error) {
	found, err := p.list(ctx, map[string]string{tagServer: p.o.ServerID})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var removed []string
	var errs []error
	for _, s := range found {
		tags := tagMap(s.GetTags())
		if tags[tagServer] != p.o.ServerID { // checked here too: a filter must never widen this
			continue
		}
		expires, err := time.Parse(time.RFC3339Nano, tags[tagExpires])
		if err != nil {
			expires = time.Unix(0, int64(s.GetCreatedAt()*1e9)).Add(p.o.Expiry)
		}
		labels := map[string]string{}
		for k, v := range tags {
			if !strings.HasPrefix(k, tagPrefix) {
				labels[k] = v
			}
		}
		if !providers.Reapable(labels, !now.Before(expires), owner) {
			continue
		}
		if err := p.Destroy(ctx, s.GetId()); err != nil && !errors.Is(err, providers.ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		p.log.Info("reaped a sandbox", "sandbox", s.GetId(), "owner", labels[providers.LabelSession], "expires", expires)
		removed = append(removed, s.GetId())
	}
	return removed, errors.Join(errs...)
}

// gone explains a failure of a sandbox that may have ended meanwhile.
func (p *Provider) gone(ctx context.Context, id string) error {
	done, err := p.finished(ctx, id)
	if err != nil && errors.Is(err, providers.ErrNotFound) {
		return err
	}
	if done {
		p.forget(id)
		return notFound(id)
	}
	return nil
}
