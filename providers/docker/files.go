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
	"strconv"
	"strings"
	"sync"
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
	for hop := range maxSymlinkHops {
		st, err := p.lstat(ctx, id, op, name, abs)
		if hop > 0 && errors.Is(err, providers.ErrNotFound) && kernelPath(abs) {
			// The engine's archive API sees the image's files, not the
			// runtime's /dev, /proc and /sys mounts: a link into them
			// reads as missing, but is a device or kernel file.
			return "", st, providers.Errorf(providers.ErrInvalidArgument, "%s %q: it links to %s, not a regular file", op, name, abs)
		}
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

// kernelPath reports whether abs lies in a runtime mount of devices or
// kernel files.
func kernelPath(abs string) bool {
	for _, dir := range []string{"/dev", "/proc", "/sys"} {
		if abs == dir || strings.HasPrefix(abs, dir+"/") {
			return true
		}
	}
	return false
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

// writeScript writes stdin to $1 with mode $2: into a temporary file beside
// it, then renamed over it, so readers never see half a file. Only a temp
// file of exactly $4 bytes replaces the target: a stream cut short (the
// server killed, the request dropped, the caller gone) ends stdin early,
// and must not pass for the whole content. Running as the sandbox's user,
// it makes what that user's commands would make (owner, permissions) and
// cannot write where they could not. One exec is faster here than the
// archive API, which re-executes the engine for every copy.
const writeScript = `t=$1; d=${t%/*}; d=${d:-/}; tmp="$d/.${t##*/}.$3` + tempSuffix + `"
mkdir -p "$d" || exit 3
trap 'rm -f "$tmp"' HUP INT TERM PIPE
cat > "$tmp" || { rm -f "$tmp"; exit 4; }
n=$(wc -c < "$tmp") || n=-1
[ "$((n))" = "$4" ] || { rm -f "$tmp"; echo "short write: $n of $4 bytes came" >&2; exit 5; }
chmod "$2" "$tmp" && mv -f "$tmp" "$t" || { rm -f "$tmp"; exit 4; }`

// tempSuffix ends the names of the temp files writes go through, so a
// listing can leave them out and a cleanup can find them.
const tempSuffix = ".mcp-sandbox-tmp"

func (p *Provider) WriteFile(ctx context.Context, id, name string, data []byte, mode fs.FileMode) error {
	wd, err := p.workdir(ctx, id)
	if err != nil {
		return err
	}
	abs, err := resolve(wd, name)
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
	code, errOut, err := p.run(ctx, id, bytes.NewReader(data), nil,
		"/bin/sh", "-c", writeScript, "write", abs, fmt.Sprintf("%o", mode.Perm()), randomHex(4), strconv.Itoa(len(data)))
	switch {
	case err != nil:
		return p.fileErr(id, "write", name, err)
	case code == 0:
		return nil
	case code == 5:
		return providers.Errorf(providers.ErrUnavailable, "write %q: the content was cut off on its way (%s); the file is unchanged, write it again", name, strings.TrimSpace(errOut))
	case strings.Contains(errOut, "Not a directory") || strings.Contains(errOut, "File exists"):
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: a parent is not a directory", name)
	case strings.Contains(errOut, "Permission denied") || strings.Contains(errOut, "Read-only"):
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: permission denied for the sandbox's user", name)
	case strings.Contains(errOut, "No space") || strings.Contains(errOut, "quota"):
		return providers.Errorf(providers.ErrTooLarge, "write %q: the sandbox's disk is full", name)
	}
	return providers.Errorf(providers.ErrUnavailable, "write %q: exit %d: %s", name, code, strings.TrimSpace(errOut))
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
	if depth < 1 {
		depth = 1
	}
	if name == "" {
		name = "."
	}
	abs, err := p.listTarget(ctx, id, name)
	if err != nil {
		return nil, false, err
	}
	out, truncated, err := p.listByFind(ctx, id, name, abs, depth, limit)
	if errors.Is(err, errNoTools) {
		out, truncated, err = p.listByArchive(ctx, id, name, abs, depth, limit, p.listBudget)
		if errors.Is(err, errOverBudget) {
			return nil, false, providers.Errorf(providers.ErrTooLarge,
				"list %q: the sandbox's image has no find, xargs, stat or tee, and the directory is too big to list without them; list a smaller directory, or use an image with those tools", name)
		}
	}
	return out, truncated, err
}

// listTarget resolves the directory to list, following a final symlink.
func (p *Provider) listTarget(ctx context.Context, id, name string) (string, error) {
	wd, err := p.workdir(ctx, id)
	if err != nil {
		return "", err
	}
	abs, err := resolve(wd, name)
	if err != nil {
		return "", err
	}
	abs, st, err := p.follow(ctx, id, "list", name, abs)
	if err != nil {
		return "", err
	}
	if !st.Mode.IsDir() {
		return "", providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	}
	return abs, nil
}

// archiveListBudget bounds how much of a directory's archive (which carries
// file contents too) ListFiles reads in an image without the tools to walk
// the tree from metadata.
const archiveListBudget = 8 << 20

const noBudget = -1

var (
	errOverBudget = errors.New("archive larger than the listing budget")
	errNoTools    = errors.New("find, xargs, stat or tee missing in the image")
)

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// listByArchive reads the directory's archive: exact, needs nothing in the
// image, but carries every file's bytes. It gives up with errOverBudget once
// more than budget bytes came (a negative budget never gives up).
func (p *Provider) listByArchive(ctx context.Context, id, name, abs string, depth, limit int, budget int64) ([]providers.FileInfo, bool, error) {
	// "dir/." archives the directory's contents as ./entry...
	res, err := p.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: strings.TrimSuffix(abs, "/") + "/."})
	if err != nil {
		return nil, false, p.fileErr(id, "list", name, err)
	}
	defer res.Content.Close()
	body := &countingReader{r: res.Content}
	var out []providers.FileInfo
	truncated := false
	tr := tar.NewReader(body)
	for {
		if budget >= 0 && body.n > budget {
			return nil, false, errOverBudget
		}
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
		// The engine walks in lexical order, directory by directory: the
		// same order local's listing cuts in.
		if limit > 0 && len(out) >= limit {
			truncated = true
			break
		}
		out = append(out, fileInfo(rel, hdr.FileInfo().Mode(), hdr.Size, hdr.ModTime))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, truncated, nil
}

// findScript lists $1 down to depth $2 from metadata alone (no file is
// read, however big): the names, NUL-terminated, go to stderr and one
// "rawmode size mtime ./name" line per name to stdout, in the same order,
// so a name holding newlines (or anything like a line) parses exactly.
// Only tools busybox and GNU both have; $3 bounds the walk's time where
// timeout takes that form (old busybox wants -t), so a huge tree stops
// costing CPU once the caller gives up.
const findScript = `for t in find xargs stat tee; do command -v $t >/dev/null 2>&1 || exit 127; done
cd -- "$1" || exit 2
exec 3>&2 2>/dev/null
[ -e /dev/fd/3 ] || exit 127
T=; timeout 1 true && T="timeout $3"
$T find . -mindepth 1 -maxdepth "$2" -print0 | tee /dev/fd/3 | xargs -0 -r stat -c '%f %s %Y %n' --
exit 0`

// Bounds on one listing: the bytes its output may take (in both streams),
// and how long it may walk.
const (
	maxFindOutput = 32 << 20
	findTimeout   = 60 * time.Second
)

// listByFind walks the directory inside the container.
func (p *Provider) listByFind(ctx context.Context, id, name, abs string, depth, limit int) ([]providers.FileInfo, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, findTimeout)
	defer cancel()
	var stats, names bytes.Buffer
	budget := &sharedBudget{n: maxFindOutput, cancel: cancel}
	code, err := p.runStreams(ctx, id, budget.writer(&stats), budget.writer(&names),
		"/bin/sh", "-c", findScript, "list", abs, strconv.Itoa(depth), strconv.Itoa(int(findTimeout/time.Second)))
	switch {
	case budget.over():
		return nil, false, providers.Errorf(providers.ErrTooLarge, "list %q: more entries than can be listed to depth %d; list a subdirectory or a smaller depth", name, depth)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return nil, false, providers.Errorf(providers.ErrTooLarge, "list %q: walking to depth %d took over %v; list a subdirectory or a smaller depth", name, depth, findTimeout)
	case err != nil:
		return nil, false, p.fileErr(id, "list", name, err)
	case code == 127:
		return nil, false, errNoTools
	case code != 0:
		return nil, false, providers.Errorf(providers.ErrUnavailable, "list %q: the walk ended with status %d", name, code)
	}
	out := parseFindOutput(names.Bytes(), stats.Bytes())
	// Cut where a lexical walk would (as the archive and local do), then
	// order by path.
	sort.Slice(out, func(i, j int) bool { return walkLess(out[i].Path, out[j].Path) })
	truncated := false
	if limit > 0 && len(out) > limit {
		out, truncated = out[:limit], true
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, truncated, nil
}

// parseFindOutput pairs each NUL-terminated name with its stat line, which
// must end in exactly that name. A name with no line (it went between the
// walk and the stat) is skipped.
func parseFindOutput(names, stats []byte) []providers.FileInfo {
	var out []providers.FileInfo
	for _, n := range bytes.Split(names, []byte{0}) {
		if len(n) < 3 || !bytes.HasPrefix(n, []byte("./")) {
			continue
		}
		f := bytes.SplitN(stats, []byte(" "), 4)
		if len(f) < 4 || !bytes.HasPrefix(f[3], n) || len(f[3]) == len(n) || f[3][len(n)] != '\n' {
			continue
		}
		raw, err1 := strconv.ParseUint(string(f[0]), 16, 32)
		size, err2 := strconv.ParseInt(string(f[1]), 10, 64)
		mtime, err3 := strconv.ParseInt(string(f[2]), 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		stats = f[3][len(n)+1:]
		out = append(out, fileInfo(string(n[2:]), modeFromRaw(uint32(raw)), size, time.Unix(mtime, 0)))
	}
	return out
}

// sharedBudget caps the bytes several writers keep between them, and
// cancels the run once they want more.
type sharedBudget struct {
	mu      sync.Mutex
	n       int
	spilled bool
	cancel  func()
}

func (b *sharedBudget) writer(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(p) > b.n {
			b.spilled = true
			b.cancel()
			return 0, errOverBudget
		}
		b.n -= len(p)
		return w.Write(p)
	})
}

func (b *sharedBudget) over() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spilled
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func safeIndex(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

// walkLess orders paths as a depth-first walk that visits each directory's
// entries by name: a directory's contents come right after it.
func walkLess(a, b string) bool {
	for {
		ai, bi := strings.IndexByte(a, '/'), strings.IndexByte(b, '/')
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if ac != bc {
			return ac < bc
		}
		if ai < 0 {
			return bi >= 0
		}
		if bi < 0 {
			return false
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

// modeFromRaw converts a Unix st_mode to an fs.FileMode.
func modeFromRaw(raw uint32) fs.FileMode {
	m := fs.FileMode(raw & 0o777)
	switch raw & 0o170000 {
	case 0o040000:
		m |= fs.ModeDir
	case 0o120000:
		m |= fs.ModeSymlink
	case 0o010000:
		m |= fs.ModeNamedPipe
	case 0o140000:
		m |= fs.ModeSocket
	case 0o020000:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		m |= fs.ModeDevice
	}
	if raw&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if raw&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if raw&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
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
