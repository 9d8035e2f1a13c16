package daytona

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func checkPath(op, p string) error {
	if p == "" {
		return providers.Errorf(providers.ErrInvalidArgument, "%s: path is empty; give a path relative to the sandbox workdir, or an absolute one", op)
	}
	if strings.ContainsRune(p, 0) {
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: path contains a NUL byte", op, p)
	}
	return nil
}

// apiFileInfo is the daemon's FileInfo (after following symlinks).
type apiFileInfo struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	IsDir   bool   `json:"isDir"`
	ModTime string `json:"modTime"`
	Mode    string `json:"mode"`
	Perm    string `json:"permissions"`
}

// info asks the daemon about the file at abs (following symlinks).
func (p *Provider) info(ctx context.Context, id, abs string) (apiFileInfo, error) {
	var fi apiFileInfo
	_, err := p.toolbox(ctx, id, http.MethodGet, "/files/info?"+url.Values{"path": {abs}}.Encode(), nil, &fi)
	if err != nil {
		return fi, p.toolboxErr(ctx, id, "stat", abs, err)
	}
	return fi, nil
}

func (p *Provider) ReadFile(ctx context.Context, id, name string) (io.ReadCloser, providers.FileInfo, error) {
	if err := checkPath("read", name); err != nil {
		return nil, providers.FileInfo{}, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	abs := c.resolve(name)
	fi, err := p.info(ctx, id, abs)
	if err != nil {
		return nil, providers.FileInfo{}, renamed(err, abs, name)
	}
	if fi.IsDir {
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: is a directory; use list_files", name)
	}
	// The daemon's mode reads like Go's FileMode.String(): "-rw-r--r--" for
	// a regular file, "prw-..." for a FIFO, "Dcrw-..." for a device. Reading
	// anything but a regular file could block or never end.
	if !strings.HasPrefix(fi.Mode, "-") {
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: not a regular file (mode %s)", name, fi.Mode)
	}
	info := providers.FileInfo{Path: name, Type: providers.TypeFile, Size: fi.Size, Mode: parsePerm(fi.Perm)}
	info.ModTime, _ = time.Parse(time.RFC3339Nano, fi.ModTime)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/files/download?"+url.Values{"path": {abs}}.Encode(), nil)
	if err != nil {
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: %w", name, err)
	}
	p.auth(req)
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, providers.FileInfo{}, p.toolboxErr(ctx, id, "read", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, providers.FileInfo{}, p.toolboxErr(ctx, id, "read", name, errorBody(resp.StatusCode, data, resp.Header))
	}
	if resp.ContentLength >= 0 {
		info.Size = resp.ContentLength
	}
	return &download{body: resp.Body, name: name, id: id, want: info.Size}, info, nil
}

// download reports a transfer cut short as what it is, not as a short file.
type download struct {
	body     io.ReadCloser
	name, id string
	want     int64
	got      int64
}

func (d *download) Read(b []byte) (int, error) {
	n, err := d.body.Read(b)
	d.got += int64(n)
	if err != nil && err != io.EOF || err == io.EOF && d.want >= 0 && d.got < d.want {
		return n, providers.Errorf(providers.ErrUnavailable, "read %q in sandbox %s: the download broke after %d of %d bytes; read it again", d.name, d.id, d.got, d.want)
	}
	return n, err
}

func (d *download) Close() error { return d.body.Close() }

// renamed puts the path the caller gave in place of the absolute one.
func renamed(err error, abs, name string) error {
	var pe *providers.Error
	if abs != name && errors.As(err, &pe) {
		return &providers.Error{Kind: pe.Kind, Msg: strings.ReplaceAll(pe.Msg, strconv.Quote(abs), strconv.Quote(name)), Err: pe.Err}
	}
	return err
}

func parsePerm(s string) fs.FileMode {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0
	}
	return fs.FileMode(n).Perm()
}

// WriteFile uploads through the daemon's bulk upload, which writes a temp
// file beside the target and renames it over (atomic, parents created,
// mode 0644); another mode takes a permissions call.
func (p *Provider) WriteFile(ctx context.Context, id, name string, data []byte, mode fs.FileMode) error {
	if err := checkPath("write", name); err != nil {
		return err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return err
	}
	target := c.resolve(name)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("files[0].path", target)
	part, _ := mw.CreateFormFile("files[0].file", target)
	part.Write(data)
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/files/bulk-upload", bytes.NewReader(body.Bytes()))
	if err != nil {
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: %w", name, err)
	}
	p.auth(req)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := p.http.Do(req)
	if err != nil {
		return p.toolboxErr(ctx, id, "write", name, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return p.toolboxErr(ctx, id, "write", name, errorBody(resp.StatusCode, answer, resp.Header))
	}
	var res struct {
		Files []struct {
			Path  string `json:"path"`
			Bytes int64  `json:"bytes"`
		} `json:"files"`
	}
	if err := json.Unmarshal(answer, &res); err != nil || len(res.Files) != 1 || res.Files[0].Bytes != int64(len(data)) {
		return providers.Errorf(providers.ErrUnavailable, "write %q in sandbox %s: the daemon did not confirm %d bytes written (answer %.200q); write it again", name, id, len(data), answer)
	}
	if perm := mode.Perm(); mode != 0 && perm != 0o644 {
		q := url.Values{"path": {target}, "mode": {fmt.Sprintf("%o", perm)}}
		if _, err := p.toolbox(ctx, id, http.MethodPost, "/files/permissions?"+q.Encode(), nil, nil); err != nil {
			return p.toolboxErr(ctx, id, "write (set the mode of)", name, err)
		}
	}
	return nil
}

// findFormat describes one entry for Stat and ListFiles: type, size,
// mtime, permissions, path below the start; NUL-terminated.
const findFormat = `%y %s %T@ %m %P\0`

// statScript describes $1 itself, without following a final symlink.
const statScript = `[ -e "$1" ] || [ -L "$1" ] || exit 44
exec find "$1" -maxdepth 0 -printf '` + findFormat + `'`

// listScript describes what lies below the directory $1, $2 levels deep,
// at most 16 MiB of it.
const listScript = `[ -d "$1" ] || { [ -e "$1" ] && exit 45; exit 44; }
find "$1" -mindepth 1 -maxdepth "$2" -printf '` + findFormat + `' | head -c 16777216`

func (p *Provider) Stat(ctx context.Context, id, name string) (providers.FileInfo, error) {
	if err := checkPath("stat", name); err != nil {
		return providers.FileInfo{}, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.FileInfo{}, err
	}
	out, code, err := p.execute(ctx, id, shellCommand(statScript, c.resolve(name)), time.Minute)
	switch {
	case err != nil:
		return providers.FileInfo{}, p.toolboxErr(ctx, id, "stat", name, err)
	case code == 44:
		return providers.FileInfo{}, providers.Errorf(providers.ErrNotFound, "stat %q: no such file or directory", name)
	case code != 0:
		return providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "stat %q: %s", name, strings.TrimSpace(out))
	}
	ents := parseFind(out)
	if len(ents) != 1 {
		return providers.FileInfo{}, providers.Errorf(providers.ErrUnavailable, "stat %q in sandbox %s: unreadable answer %.200q (the image needs GNU find)", name, id, out)
	}
	ents[0].Path = name
	return ents[0], nil
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
	dir := path.Clean(c.resolve(name))
	// The daemon's own listing checks the directory (and, in the fake,
	// keeps to the sandbox); a command then describes symlinks as such and
	// goes deeper than one level.
	if _, err := p.toolbox(ctx, id, http.MethodGet, "/files?"+url.Values{"path": {dir}}.Encode(), nil, nil); err != nil {
		if err := p.toolboxErr(ctx, id, "list", name, err); !errors.Is(err, providers.ErrInvalidArgument) {
			return nil, false, err
		}
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	}
	out, code, err := p.execute(ctx, id, shellCommand(listScript, dir, strconv.Itoa(max(depth, 1))), time.Minute)
	switch {
	case err != nil:
		return nil, false, p.toolboxErr(ctx, id, "list", name, err)
	case code == 44:
		return nil, false, providers.Errorf(providers.ErrNotFound, "list %q: no such directory", name)
	case code == 45:
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	case code != 0:
		return nil, false, providers.Errorf(providers.ErrUnavailable, "list %q in sandbox %s: %s", name, id, strings.TrimSpace(out))
	}
	ents := parseFind(out)
	sort.Slice(ents, func(i, j int) bool { return pathLess(ents[i].Path, ents[j].Path) })
	if limit > 0 && len(ents) > limit {
		return ents[:limit], true, nil
	}
	return ents, false, nil
}

// pathLess orders paths component by component, as a directory walk does.
func pathLess(a, b string) bool {
	for {
		ha, ra, _ := strings.Cut(a, "/")
		hb, rb, _ := strings.Cut(b, "/")
		if ha != hb {
			return ha < hb
		}
		if ra == "" || rb == "" {
			return ra == "" && rb != ""
		}
		a, b = ra, rb
	}
}

// parseFind reads findFormat records; a cut last record is left out.
func parseFind(out string) []providers.FileInfo {
	var ents []providers.FileInfo
	for {
		rec, rest, ok := strings.Cut(out, "\x00")
		if !ok {
			return ents
		}
		out = rest
		f := strings.SplitN(rec, " ", 5)
		if len(f) != 5 {
			continue
		}
		fi := providers.FileInfo{Path: f[4]}
		fi.Size, _ = strconv.ParseInt(f[1], 10, 64)
		if secs, err := strconv.ParseFloat(f[2], 64); err == nil {
			fi.ModTime = time.Unix(0, int64(secs*1e9)).UTC()
		}
		fi.Mode = parsePerm(f[3])
		switch f[0] {
		case "f":
			fi.Type = providers.TypeFile
		case "d":
			fi.Type, fi.Mode = providers.TypeDir, fi.Mode|fs.ModeDir
		case "l":
			fi.Type, fi.Mode = providers.TypeSymlink, fi.Mode|fs.ModeSymlink
		default:
			fi.Type = providers.TypeOther
		}
		ents = append(ents, fi)
	}
}
