package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Files move through the engine's archive (tar) API: binary-exact, no shell
// or tools needed in the image, and the engine resolves paths (symlinks
// included) inside the container's own root, so nothing reaches the host.

const maxSymlinkHops = 16

func isNoSuchContainer(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "no such container")
}

// fileErr turns an archive API error into a typed one naming the path.
func (p *Provider) fileErr(id, op, name string, err error) error {
	msg := strings.ToLower(err.Error())
	switch {
	case isNoSuchContainer(err):
		return p.apiErr(id, op, err)
	case cerrdefs.IsNotFound(err):
		return providers.Errorf(providers.ErrNotFound, "%s %q: no such file or directory", op, name)
	case strings.Contains(msg, "not a directory"):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: a parent is not a directory", op, name)
	case strings.Contains(msg, "cannot overwrite"):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: is a directory", op, name)
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "read-only file system"):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: %v", op, name, err)
	}
	return p.apiErr(id, fmt.Sprintf("%s %q", op, name), err)
}

// lstat describes a container path without following a final symlink.
func (p *Provider) lstat(ctx context.Context, id, op, name, abs string) (container.PathStat, error) {
	res, err := p.cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: abs})
	if err == nil {
		return res.Stat, nil
	}
	if !cerrdefs.IsNotFound(err) && !client.IsErrConnectionFailed(err) && abs != "/" {
		// A stat (HEAD) error carries no message; the usual cause is a
		// parent that is a file.
		if st, perr := p.lstat(ctx, id, op, name, path.Dir(abs)); perr == nil && !st.Mode.IsDir() && st.Mode&fs.ModeSymlink == 0 {
			return container.PathStat{}, providers.Errorf(providers.ErrInvalidArgument, "%s %q: a parent is not a directory", op, name)
		} else if perr != nil && !errors.Is(perr, providers.ErrNotFound) {
			return container.PathStat{}, perr
		}
	}
	return container.PathStat{}, p.fileErr(id, op, name, err)
}

// follow resolves symlinks at abs (the engine resolves those in parents).
func (p *Provider) follow(ctx context.Context, id, op, name, abs string) (string, container.PathStat, error) {
	for range maxSymlinkHops {
		st, err := p.lstat(ctx, id, op, name, abs)
		if err != nil || st.Mode&fs.ModeSymlink == 0 {
			return abs, st, err
		}
		target := st.LinkTarget
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(abs), target)
		}
		abs = path.Clean(target)
	}
	return "", container.PathStat{}, providers.Errorf(providers.ErrInvalidArgument, "%s %q: too many levels of symbolic links", op, name)
}

type tarFile struct {
	io.Reader
	body io.Closer
}

func (f tarFile) Close() error { return f.body.Close() }

func (p *Provider) ReadFile(ctx context.Context, id, name string) (io.ReadCloser, providers.FileInfo, error) {
	wd, err := p.workdir(ctx, id)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	abs, err := resolve(wd, name)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	abs, st, err := p.follow(ctx, id, "read", name, abs)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	switch {
	case st.Mode.IsDir():
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: is a directory; use list_files", name)
	case !st.Mode.IsRegular():
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: not a regular file", name)
	}
	res, err := p.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: abs})
	if err != nil {
		return nil, providers.FileInfo{}, p.fileErr(id, "read", name, err)
	}
	tr := tar.NewReader(res.Content)
	hdr, err := tr.Next()
	if err != nil || hdr.Typeflag != tar.TypeReg {
		res.Content.Close()
		if err == nil {
			err = fmt.Errorf("the engine sent a %q entry", hdr.Typeflag)
		}
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrUnavailable, "read %q: %w", name, err)
	}
	// Stream straight from the engine: the file is never held in memory.
	return tarFile{tr, res.Content}, fileInfo(name, st.Mode, hdr.Size, st.Mtime), nil
}

func (p *Provider) WriteFile(ctx context.Context, id, name string, data []byte, mode fs.FileMode) error {
	b, err := p.box(ctx, id)
	if err != nil {
		return err
	}
	abs, err := resolve(b.workdir, name)
	if err != nil {
		return err
	}
	uid, gid, err := p.owner(ctx, id, b)
	if err != nil {
		return err
	}
	if abs == "/" {
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: is the root directory, not a file", name)
	}
	st, err := p.lstat(ctx, id, "write", name, abs)
	switch {
	case err == nil && st.Mode.IsDir():
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: is a directory", name)
	case err == nil && mode == 0 && st.Mode.IsRegular():
		mode = st.Mode.Perm() // keep an existing script executable
	case err != nil && !errors.Is(err, providers.ErrNotFound):
		return err
	}
	if mode == 0 {
		mode = 0o644
	}

	// Find the nearest existing ancestor; the archive creates the rest.
	base := path.Dir(abs)
	var missing []string
	for {
		st, err := p.lstat(ctx, id, "write", name, base)
		if err == nil {
			if !st.Mode.IsDir() && st.Mode&fs.ModeSymlink == 0 {
				return providers.Errorf(providers.ErrInvalidArgument, "write %q: a parent is not a directory", name)
			}
			break
		}
		if !errors.Is(err, providers.ErrNotFound) {
			return err
		}
		missing = append([]string{path.Base(base)}, missing...)
		base = path.Dir(base)
	}

	// The archive holds the missing directories and the file under a
	// temporary name; a rename in the container then replaces the target
	// at once, so readers never see half a file.
	rel := path.Join(append(missing, path.Base(abs))...)
	tmp := path.Join(path.Dir(rel), fmt.Sprintf(".%s.%s.tmp", path.Base(abs), randomHex(4)))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for i := range missing {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path.Join(missing[:i+1]...) + "/", Mode: 0o755, Uid: uid, Gid: gid, ModTime: now})
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: tmp, Mode: int64(mode.Perm()), Uid: uid, Gid: gid, Size: int64(len(data)), ModTime: now})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		return providers.Errorf(providers.ErrUnavailable, "write %q: %w", name, err)
	}
	_, err = p.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{
		DestinationPath: base, Content: &buf,
	})
	if err != nil {
		return p.fileErr(id, "write", name, err)
	}
	tmpAbs := path.Join(base, tmp)
	code, errOut, err := p.run(ctx, id, "mv", "-f", "--", tmpAbs, path.Join(base, rel))
	if err != nil {
		return p.fileErr(id, "write", name, err)
	}
	if code != 0 {
		p.run(ctx, id, "rm", "-f", "--", tmpAbs)
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: %s", name, strings.TrimSpace(errOut))
	}
	return nil
}

func (p *Provider) Stat(ctx context.Context, id, name string) (providers.FileInfo, error) {
	wd, err := p.workdir(ctx, id)
	if err != nil {
		return providers.FileInfo{}, err
	}
	abs, err := resolve(wd, name)
	if err != nil {
		return providers.FileInfo{}, err
	}
	st, err := p.lstat(ctx, id, "stat", name, abs)
	if err != nil {
		return providers.FileInfo{}, err
	}
	return fileInfo(name, st.Mode, st.Size, st.Mtime), nil
}

func (p *Provider) ListFiles(ctx context.Context, id, name string, depth, limit int) ([]providers.FileInfo, bool, error) {
	if name == "" {
		name = "."
	}
	if depth < 1 {
		depth = 1
	}
	wd, err := p.workdir(ctx, id)
	if err != nil {
		return nil, false, err
	}
	abs, err := resolve(wd, name)
	if err != nil {
		return nil, false, err
	}
	abs, st, err := p.follow(ctx, id, "list", name, abs)
	if err != nil {
		return nil, false, err
	}
	if !st.Mode.IsDir() {
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	}
	// "dir/." archives the directory's contents as ./entry...
	res, err := p.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: strings.TrimSuffix(abs, "/") + "/."})
	if err != nil {
		return nil, false, p.fileErr(id, "list", name, err)
	}
	defer res.Content.Close()
	var out []providers.FileInfo
	truncated := false
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, providers.Errorf(providers.ErrUnavailable, "list %q: %w", name, err)
		}
		rel := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if rel == "" || strings.Count(rel, "/")+1 > depth {
			continue
		}
		if limit > 0 && len(out) >= limit {
			truncated = true
			break
		}
		out = append(out, fileInfo(rel, hdr.FileInfo().Mode(), hdr.Size, hdr.ModTime))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, truncated, nil
}

func fileInfo(name string, mode fs.FileMode, size int64, mtime time.Time) providers.FileInfo {
	t := providers.TypeOther
	switch {
	case mode.IsRegular():
		t = providers.TypeFile
	case mode.IsDir():
		t = providers.TypeDir
	case mode&fs.ModeSymlink != 0:
		t = providers.TypeSymlink
	}
	return providers.FileInfo{Path: path.Clean(name), Type: t, Size: size, Mode: mode, ModTime: mtime.UTC()}
}
