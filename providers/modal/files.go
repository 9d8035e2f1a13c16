package modal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// fsTools is the helper Modal puts in every sandbox for file operations;
// the SDKs exec it with one JSON argument naming the operation.
const fsTools = "/__modal/.bin/modal-sandbox-fs-tools"

// fsEntry is one entry as fs-tools prints it.
type fsEntry struct {
	Name          string  `json:"name"`
	Path          string  `json:"path"`
	Type          string  `json:"type"`
	Size          int64   `json:"size"`
	Mode          uint32  `json:"mode"`
	ModifiedTime  float64 `json:"modified_time"`
	SymlinkTarget *string `json:"symlink_target"`
}

// fsError is what fs-tools prints on stderr when it fails.
type fsError struct {
	Kind    string `json:"error_kind"`
	Message string `json:"message"`
}

func checkPath(op, p string) error {
	if p == "" {
		return providers.Errorf(providers.ErrInvalidArgument, "%s: path is empty; give a path relative to the sandbox workdir, or an absolute one", op)
	}
	if strings.ContainsRune(p, 0) {
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: path contains a NUL byte", op, p)
	}
	return nil
}

// fsCall runs one fs-tools operation and returns its stdout; a failure the
// helper reports becomes an error of the matching kind naming the path.
func (p *Provider) fsCall(ctx context.Context, c *sandboxConn, op, name string, arg any, stdin io.Reader) ([]byte, error) {
	return p.fsCallOut(ctx, c, op, name, arg, stdin, stdin == nil)
}

// fsCallOut is fsCall, reading stdout only when wantStdout.
func (p *Provider) fsCallOut(ctx context.Context, c *sandboxConn, op, name string, arg any, stdin io.Reader, wantStdout bool) ([]byte, error) {
	js, err := json.Marshal(arg)
	if err != nil {
		return nil, err
	}
	out, errOut, code, err := p.runHelper(ctx, c, []string{fsTools, string(js)}, stdin, wantStdout)
	if err != nil {
		return nil, err
	}
	if code == 0 {
		return out, nil
	}
	var fe fsError
	if json.Unmarshal(bytes.TrimSpace(errOut), &fe) != nil || fe.Kind == "" {
		return nil, providers.Errorf(providers.ErrUnavailable, "%s %q in sandbox %s: the file helper failed (exit %d): %s", op, name, c.id, code, strings.TrimSpace(string(errOut)))
	}
	switch fe.Kind {
	case "NotFound":
		return nil, providers.Errorf(providers.ErrNotFound, "%s %q: no such file or directory", op, name)
	case "NotDirectory", "IsFile":
		return nil, providers.Errorf(providers.ErrNotFound, "%s %q: a parent is not a directory", op, name)
	case "IsDirectory":
		return nil, providers.Errorf(providers.ErrInvalidArgument, "%s %q: is a directory", op, name)
	case "PermissionDenied":
		return nil, providers.Errorf(providers.ErrInvalidArgument, "%s %q: permission denied (%s)", op, name, fe.Message)
	case "FileTooLarge":
		return nil, providers.Errorf(providers.ErrTooLarge, "%s %q: %s", op, name, fe.Message)
	}
	return nil, providers.Errorf(providers.ErrInvalidArgument, "%s %q: %s (%s)", op, name, fe.Message, fe.Kind)
}

type pathArg struct {
	Path string `json:"path"`
}

func fileInfo(name string, e fsEntry) providers.FileInfo {
	fi := providers.FileInfo{Path: name, Size: e.Size, Mode: fs.FileMode(e.Mode & 0o777),
		ModTime: time.Unix(0, int64(e.ModifiedTime*1e9)).UTC()}
	switch {
	case e.Type == "symlink" || e.SymlinkTarget != nil:
		fi.Type, fi.Mode = providers.TypeSymlink, fi.Mode|fs.ModeSymlink
	case e.Type == "directory":
		fi.Type, fi.Mode = providers.TypeDir, fi.Mode|fs.ModeDir
	case e.Type == "file":
		fi.Type = providers.TypeFile
	default:
		fi.Type = providers.TypeOther
	}
	return fi
}

// stat describes abs (without following a final symlink); name is what
// the caller gave, for messages.
func (p *Provider) stat(ctx context.Context, c *sandboxConn, abs, name string) (providers.FileInfo, error) {
	out, err := p.fsCall(ctx, c, "stat", name, map[string]pathArg{"Stat": {abs}}, nil)
	if err != nil {
		return providers.FileInfo{}, err
	}
	var e fsEntry
	if err := json.Unmarshal(out, &e); err != nil {
		return providers.FileInfo{}, providers.Errorf(providers.ErrUnavailable, "stat %q: unreadable answer from the file helper: %v", name, err)
	}
	return fileInfo(name, e), nil
}

func (p *Provider) Stat(ctx context.Context, id, name string) (providers.FileInfo, error) {
	if err := checkPath("stat", name); err != nil {
		return providers.FileInfo{}, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.FileInfo{}, err
	}
	return p.stat(ctx, c, p.resolve(c, name), name)
}

func (p *Provider) ReadFile(ctx context.Context, id, name string) (io.ReadCloser, providers.FileInfo, error) {
	if err := checkPath("read", name); err != nil {
		return nil, providers.FileInfo{}, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	abs := p.resolve(c, name)
	// The stat (what kind of file, its mode and time) and the read run at
	// once: one round of calls instead of two.
	type read struct {
		data []byte
		err  error
	}
	got := make(chan read, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		data, err := p.fsCall(rctx, c, "read", name, map[string]pathArg{"ReadFile": {abs}}, nil)
		got <- read{data, err}
	}()
	info, err := p.stat(ctx, c, abs, name)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	switch info.Type {
	case providers.TypeDir:
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: is a directory; use list_files", name)
	case providers.TypeFile, providers.TypeSymlink:
	default:
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: not a regular file", name)
	}
	r := <-got
	data, err := r.data, r.err
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	if info.Type == providers.TypeFile && int64(len(data)) != info.Size {
		// It changed between the stat and the read; report what was read.
		p.log.Debug("modal: file changed while read", "sandbox", id, "path", name, "stat", info.Size, "read", len(data))
	}
	info.Type, info.Size = providers.TypeFile, int64(len(data))
	return io.NopCloser(bytes.NewReader(data)), info, nil
}

// chmodMove sets the uploaded temp file's mode and moves it over the target.
const chmodMove = `chmod "$1" "$2" && mv -f "$2" "$3"`

// WriteFile uploads through fs-tools to a temp name beside the target and
// moves it into place, so a reader sees the old file or the new one, never
// half of it. The upload is whole once fs-tools exits 0: it reads the
// stdin stream to its end, and the router acknowledged every byte of it.
func (p *Provider) WriteFile(ctx context.Context, id, name string, data []byte, mode fs.FileMode) error {
	if err := checkPath("write", name); err != nil {
		return err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return err
	}
	target := p.resolve(c, name)
	if target == "/" {
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: is a directory", name)
	}
	suffix := make([]byte, 6)
	rand.Read(suffix)
	tmp := path.Join(path.Dir(target), "."+path.Base(target)+".mcp-sandbox-"+hex.EncodeToString(suffix))
	// Whether the target is a directory is asked while the bytes move.
	isDir := make(chan bool, 1)
	go func() {
		fi, err := p.stat(ctx, c, target, name)
		isDir <- err == nil && fi.Type == providers.TypeDir
	}()
	// fs-tools creates missing parents.
	if _, err := p.fsCall(ctx, c, "write", name, map[string]pathArg{"WriteFile": {tmp}}, bytes.NewReader(data)); err != nil {
		<-isDir
		p.removeUpload(ctx, c, tmp)
		return err
	}
	args := []string{"mv", "-f", tmp, target}
	if mode != 0 {
		args = []string{"/bin/sh", "-c", chmodMove, "mcp-sandbox-place", fmt.Sprintf("%o", mode.Perm()), tmp, target}
	}
	var placeErr error
	if <-isDir {
		placeErr = providers.Errorf(providers.ErrInvalidArgument, "write %q: is a directory", name)
	} else if _, errOut, code, err := p.runHelper(ctx, c, args, nil, false); err != nil {
		// Cut while placing: the move has run or never will (runHelper
		// settles it), so the temp file, if still there, is left over.
		p.removeUpload(ctx, c, tmp)
		return err
	} else if code != 0 {
		placeErr = providers.Errorf(providers.ErrInvalidArgument, "write %q: %s", name, strings.TrimSpace(string(errOut)))
	}
	if placeErr != nil {
		p.removeUpload(ctx, c, tmp)
	}
	return placeErr
}

// removeUpload removes the temp file of a write that did not complete,
// even when the caller has given up.
func (p *Provider) removeUpload(ctx context.Context, c *sandboxConn, tmp string) {
	kctx, cancel := detached(ctx)
	defer cancel()
	_, err := p.fsCall(kctx, c, "remove", tmp, map[string]any{"Remove": map[string]any{"path": tmp, "recursive": false}}, nil)
	if err != nil && !errors.Is(err, providers.ErrNotFound) {
		p.log.Debug("modal: cannot remove an upload's temp file", "sandbox", c.id, "path", tmp, "err", err)
	}
}

func (p *Provider) ListFiles(ctx context.Context, id, name string, depth, limit int) ([]providers.FileInfo, bool, error) {
	if name == "" {
		name = "."
	}
	if err := checkPath("list", name); err != nil {
		return nil, false, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return nil, false, err
	}
	dir := p.resolve(c, name)
	st, err := p.stat(ctx, c, dir, name)
	if err != nil {
		return nil, false, err
	}
	if st.Type != providers.TypeDir && st.Type != providers.TypeSymlink {
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	}
	// Depth first in name order, one fs-tools listing per directory, until
	// the limit is passed (by one, to know that entries were left out).
	var out []providers.FileInfo
	var walk func(rel string, d int) error
	walk = func(rel string, d int) error {
		raw, err := p.fsCall(ctx, c, "list", path.Join(name, rel), map[string]pathArg{"ListFiles": {path.Join(dir, rel)}}, nil)
		if err != nil {
			if rel != "" {
				return nil // vanished or unreadable below the top: skip it
			}
			return err
		}
		var ents []fsEntry
		if err := json.Unmarshal(raw, &ents); err != nil {
			return providers.Errorf(providers.ErrUnavailable, "list %q: unreadable answer from the file helper: %v", name, err)
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
		for _, e := range ents {
			if limit > 0 && len(out) > limit {
				return nil
			}
			fi := fileInfo(path.Join(rel, e.Name), e)
			out = append(out, fi)
			if fi.Type == providers.TypeDir && d < max(depth, 1) {
				if err := walk(fi.Path, d+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk("", 1); err != nil {
		return nil, false, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	if limit > 0 && len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
