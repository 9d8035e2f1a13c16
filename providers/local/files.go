package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

// rel maps a sandbox path to one relative to the sandbox root. Relative paths
// are taken from the root; absolute paths must lie under the workdir
// commands see in `pwd`. os.Root then refuses `..` and symlinks
// that would leave the root.
func (p *Provider) rel(id, name string) (string, error) {
	if name == "" {
		return "", providers.Errorf(providers.ErrInvalidArgument, "path is empty")
	}
	if strings.ContainsRune(name, 0) {
		return "", providers.Errorf(providers.ErrInvalidArgument, "path %q contains a NUL byte", name)
	}
	if filepath.IsAbs(name) {
		// Commands see the sandbox at /workspace (or, without a mount
		// namespace, at its host path): both name the same directory.
		clean := filepath.Clean(name)
		for _, root := range []string{jail.Workspace, p.root(id)} {
			if clean == root {
				return ".", nil
			}
			if r, ok := strings.CutPrefix(clean, root+string(filepath.Separator)); ok {
				return r, nil
			}
		}
		return "", providers.Errorf(providers.ErrInvalidArgument,
			"path %q is outside the sandbox; use a path relative to the sandbox's workdir, or under %s", name, jail.Workspace)
	}
	return filepath.Clean(name), nil
}

// open resolves id and path and opens the sandbox root.
func (p *Provider) open(id, name string) (*os.Root, string, error) {
	if _, err := p.load(id); err != nil {
		return nil, "", err
	}
	rel, err := p.rel(id, name)
	if err != nil {
		return nil, "", err
	}
	if err := p.disks.ensure(p.base(id), p.root(id)); err != nil {
		return nil, "", providers.Errorf(providers.ErrUnavailable, "sandbox %s: %w", id, err)
	}
	r, err := os.OpenRoot(p.root(id))
	if err != nil {
		return nil, "", providers.Errorf(providers.ErrUnavailable, "open sandbox %s: %w", id, err)
	}
	return r, rel, nil
}

// fileErr turns an os error into a typed one that names the path.
func fileErr(op, name string, err error) error {
	var pe *fs.PathError
	var nr *errNotRegular
	switch {
	case errors.As(err, &nr):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: %v; only regular files can be read (a command can read others, with a timeout: timeout 5 cat FILE)", op, name, nr)
	case errors.Is(err, fs.ErrNotExist):
		return providers.Errorf(providers.ErrNotFound, "%s %q: no such file or directory", op, name)
	case errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes from parent"),
		strings.Contains(err.Error(), "path escapes"):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: path leaves the sandbox", op, name)
	case errors.Is(err, syscall.EISDIR):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: is a directory", op, name)
	case errors.Is(err, syscall.ENOTDIR):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: a parent is not a directory", op, name)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: the sandbox's disk is full (no space left on device): remove files in it or write less", op, name)
	case errors.Is(err, fs.ErrPermission):
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: permission denied", op, name)
	}
	return providers.Errorf(providers.ErrUnavailable, "%s %q: %w", op, name, err)
}

type rootFile struct {
	*os.File
	root *os.Root
}

func (f rootFile) Close() error {
	err := f.File.Close()
	f.root.Close()
	return err
}

func (p *Provider) ReadFile(ctx context.Context, id, name string) (io.ReadCloser, providers.FileInfo, error) {
	r, rel, err := p.open(id, name)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	f, err := openRootRegular(r, rel, os.O_RDONLY)
	if err != nil {
		r.Close()
		var nr *errNotRegular
		if errors.As(err, &nr) && nr.kind == kindOf(fs.ModeDir) {
			return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: is a directory; use list_files", name)
		}
		return nil, providers.FileInfo{}, fileErr("read", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		r.Close()
		return nil, providers.FileInfo{}, fileErr("read", name, err)
	}
	return rootFile{f, r}, info(name, fi), nil
}

func (p *Provider) WriteFile(ctx context.Context, id, name string, data []byte, mode fs.FileMode) error {
	m, err := p.load(id)
	if err != nil {
		return err
	}
	r, rel, err := p.open(id, name)
	if err != nil {
		return err
	}
	defer r.Close()
	uid := owner(m)
	if rel == "." {
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: is the sandbox root, not a file", name)
	}
	if dir := filepath.Dir(rel); dir != "." {
		if err := r.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) { // a parent exists as a file
				err = syscall.ENOTDIR
			}
			return fileErr("write", name, err)
		}
		if uid >= 0 {
			for d := dir; d != "."; d = filepath.Dir(d) {
				r.Lchown(d, uid, uid)
			}
		}
	}
	if mode == 0 {
		mode = 0o644
		if fi, err := r.Stat(rel); err == nil && fi.Mode().IsRegular() {
			mode = fi.Mode().Perm() // keep an existing script executable
		}
	}
	if fi, err := r.Lstat(rel); err == nil && fi.IsDir() {
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: is a directory", name)
	}
	// Write beside the target and rename over it, so readers never see a
	// half-written file.
	tmp := filepath.Join(filepath.Dir(rel), fmt.Sprintf(".%s.%s.tmp", filepath.Base(rel), uuid.NewString()[:8]))
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return fileErr("write", name, err)
	}
	_, werr := f.Write(data)
	if werr == nil && uid >= 0 {
		werr = f.Chown(uid, uid)
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = r.Chmod(tmp, mode.Perm()) // OpenFile's mode is masked by umask
	}
	if werr == nil {
		werr = r.Rename(tmp, rel)
	}
	if werr != nil {
		r.Remove(tmp)
		return fileErr("write", name, werr)
	}
	return nil
}

func (p *Provider) Stat(ctx context.Context, id, name string) (providers.FileInfo, error) {
	r, rel, err := p.open(id, name)
	if err != nil {
		return providers.FileInfo{}, err
	}
	defer r.Close()
	fi, err := r.Lstat(rel)
	if err != nil {
		return providers.FileInfo{}, fileErr("stat", name, err)
	}
	return info(name, fi), nil
}

func (p *Provider) ListFiles(ctx context.Context, id, name string, depth, limit int) ([]providers.FileInfo, bool, error) {
	if name == "" {
		name = "."
	}
	r, rel, err := p.open(id, name)
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	if fi, err := r.Stat(rel); err != nil {
		return nil, false, fileErr("list", name, err)
	} else if !fi.IsDir() {
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	}
	sub, err := r.OpenRoot(rel)
	if err != nil {
		return nil, false, fileErr("list", name, err)
	}
	defer sub.Close()
	if depth < 1 {
		depth = 1
	}
	var out []providers.FileInfo
	truncated := false
	// fs.WalkDir visits in lexical order and does not follow symlinks.
	err = fs.WalkDir(sub.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			return nil // unreadable subdirectory: list what we can
		}
		if p == "." {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(out) >= limit && limit > 0 {
			truncated = true
			return fs.SkipAll
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, info(p, fi))
		if d.IsDir() && strings.Count(p, "/")+1 >= depth {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, false, fileErr("list", name, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, truncated, nil
}

func info(name string, fi fs.FileInfo) providers.FileInfo {
	t := providers.TypeOther
	switch {
	case fi.Mode().IsRegular():
		t = providers.TypeFile
	case fi.IsDir():
		t = providers.TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		t = providers.TypeSymlink
	}
	return providers.FileInfo{Path: path.Clean(filepath.ToSlash(name)), Type: t, Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime().UTC()}
}

// owner is the uid a root server gives what it writes into a sandbox,
// whose commands run as an unprivileged uid of its own; -1 when the files
// are the server's own uid's (a server that is not root).
func owner(m meta) int {
	if os.Geteuid() != 0 || m.HostUID <= 0 {
		return -1
	}
	return m.HostUID
}
