package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// ensureImage makes sure image is on the engine, pulling it if absent (with
// progress in the log), and returns the user its commands run as and the
// image's ID.
func (p *Provider) ensureImage(ctx context.Context, image string) (user, imageID string, err error) {
	if strings.TrimSpace(image) == "" || strings.ContainsAny(image, " \t\n\x00") {
		return "", "", providers.Errorf(providers.ErrInvalidArgument, "image %q is not an image reference (example: python:3.12-slim)", image)
	}
	if user, id, ok, err := p.imageUser(ctx, image); err != nil || ok {
		return user, id, err
	}
	// A pull makes the engine, on the host's network, connect wherever the
	// reference points: only the operator's images may be pulled.
	if !p.set.images.Allowed(imageNames(image)...) {
		return "", "", providers.Errorf(providers.ErrInvalidArgument,
			"image %q is not on the Docker engine and this server may not pull it: the operator allows pulling only the default image %q and images matching %s (%q); use the default image or one already on the engine",
			image, p.set.image, EnvAllowed, p.set.images.Patterns())
	}
	// One pull at a time: concurrent creates of a new image wait for the
	// first pull instead of starting their own.
	p.pullMu.Lock()
	defer p.pullMu.Unlock()
	if user, id, ok, err := p.imageUser(ctx, image); err != nil || ok {
		return user, id, err
	}
	if err := p.pull(ctx, image); err != nil {
		return "", "", err
	}
	user, id, ok, err := p.imageUser(ctx, image)
	if err == nil && !ok {
		err = providers.Errorf(providers.ErrUnavailable, "image %q was pulled but the engine does not list it", image)
	}
	return user, id, err
}

// imageNames are the names a reference goes by: as written, and in full
// (python:3.12 is docker.io/library/python:3.12).
func imageNames(image string) []string {
	names := []string{image}
	if named, err := reference.ParseNormalizedNamed(image); err == nil {
		names = append(names, reference.TagNameOnly(named).String(), reference.FamiliarString(reference.TagNameOnly(named)))
	}
	return names
}

func (p *Provider) imageUser(ctx context.Context, image string) (user, id string, ok bool, err error) {
	res, err := p.cli.ImageInspect(ctx, image)
	switch {
	case err == nil:
		if res.Config != nil {
			return res.Config.User, res.ID, true, nil
		}
		return "", res.ID, true, nil
	case cerrdefs.IsNotFound(err):
		return "", "", false, nil
	case cerrdefs.IsInvalidArgument(err):
		return "", "", false, providers.Errorf(providers.ErrInvalidArgument, "image %q is not a valid image reference: %w", image, err)
	}
	return "", "", false, p.apiErr("", "inspect image "+image, err)
}

func (p *Provider) pull(ctx context.Context, image string) error {
	p.log.Info("pulling image", "image", image)
	start := time.Now()
	resp, err := p.cli.ImagePull(ctx, image, client.ImagePullOptions{})
	if err == nil {
		lastLog := time.Time{}
		for msg, merr := range resp.JSONMessages(ctx) {
			if merr != nil {
				err = merr
				break
			}
			if msg.Error != nil {
				err = msg.Error
				break
			}
			// Status changes always; byte progress at most every 2s.
			if msg.Progress == nil || time.Since(lastLog) > 2*time.Second {
				p.log.Info("pull progress", "image", image, "layer", msg.ID, "status", msg.Status)
				lastLog = time.Now()
			}
		}
	}
	if err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return providers.Errorf(providers.ErrInvalidArgument, "image %q is not a valid image reference: %w", image, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if pullCannotSucceed(err) {
			return providers.Errorf(providers.ErrInvalidArgument,
				"image %q is not on the Docker engine and cannot be pulled (%w); load or build it on the engine, or choose another image with %s or the image argument",
				image, err, EnvImage)
		}
		return providers.Errorf(providers.ErrUnavailable,
			"image %q is not on the Docker engine and pulling it failed: %w; try again, load or build it on the engine, or choose another image with %s or the image argument",
			image, err, EnvImage)
	}
	p.log.Info("image pulled", "image", image, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// pullCannotSucceed tells a pull that repeating will not mend: the registry
// does not have the image or refuses us, or no registry can be reached at
// all (no name resolution, nothing listening), as on an offline engine. The
// engine reports the last as text, so its words are what there is to read.
func pullCannotSucceed(err error) bool {
	if cerrdefs.IsNotFound(err) || cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) || providers.Unreachable(err) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"no such host", "connection refused", "network is unreachable", "no route to host",
		"pull access denied", "manifest unknown", "not found", "unauthorized"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// chownWorkdir hands the (root-made) workdir to the image's user before the
// container starts. The engine applies the archive's ownership, which needs
// no capability inside the container.
func (p *Provider) chownWorkdir(ctx context.Context, id string, uid, gid int) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	name := strings.TrimPrefix(p.set.workdir, "/")
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, Uid: uid, Gid: gid, ModTime: time.Now()})
	tw.Close()
	_, err := p.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf})
	if err != nil {
		return providers.Errorf(providers.ErrUnavailable, "give the workdir %s to the image's user: %w", p.set.workdir, err)
	}
	return nil
}

// lookupUser reads the container's own /etc/passwd and /etc/group (through
// the archive API: no tools needed in the image) to resolve user[:group].
func (p *Provider) lookupUser(ctx context.Context, id, user string) (int, int, error) {
	name, group, _ := strings.Cut(user, ":")
	if name == "" || name == "root" || name == "0" {
		if group == "" || group == "root" || group == "0" {
			return 0, 0, nil
		}
	}
	uid, uerr := strconv.Atoi(name)
	gid := -1
	if name != "" && uerr != nil || group == "" {
		passwd, err := p.readSmallFile(ctx, id, "/etc/passwd")
		if err != nil && uerr != nil {
			return 0, 0, providers.Errorf(providers.ErrUnavailable, "the image's user %q: cannot read /etc/passwd: %w", user, err)
		}
		found := false
		for _, line := range strings.Split(passwd, "\n") {
			f := strings.Split(line, ":")
			if len(f) < 4 || (f[0] != name && f[2] != name) {
				continue
			}
			u, err1 := strconv.Atoi(f[2])
			g, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				uid, gid, found = u, g, true
				break
			}
		}
		if !found && uerr != nil {
			return 0, 0, providers.Errorf(providers.ErrUnavailable, "the image's user %q is not in its /etc/passwd", user)
		}
		if !found {
			gid = uid
		}
	}
	if group != "" {
		g, err := strconv.Atoi(group)
		if err != nil {
			groups, gerr := p.readSmallFile(ctx, id, "/etc/group")
			if gerr != nil {
				return 0, 0, providers.Errorf(providers.ErrUnavailable, "the image's group %q: cannot read /etc/group: %w", group, gerr)
			}
			g = -1
			for _, line := range strings.Split(groups, "\n") {
				if f := strings.Split(line, ":"); len(f) >= 3 && f[0] == group {
					g, _ = strconv.Atoi(f[2])
					break
				}
			}
			if g < 0 {
				return 0, 0, providers.Errorf(providers.ErrUnavailable, "the image's group %q is not in its /etc/group", group)
			}
		}
		gid = g
	}
	return uid, gid, nil
}

// readSmallFile reads a file of at most 1 MiB from the container.
func (p *Provider) readSmallFile(ctx context.Context, id, name string) (string, error) {
	res, err := p.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: name})
	if err != nil {
		return "", err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
	return string(b), err
}
