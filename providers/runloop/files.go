package runloop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
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
	if strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\n') {
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: path contains a NUL byte or a newline", op, p)
	}
	return nil
}

// shellPath makes p safe as a single argument: quoted, and never read as
// an option.
func shellPath(p string) string {
	if strings.HasPrefix(p, "-") {
		p = "./" + p
	}
	return shellQuote(p)
}

// statScript prints "<raw mode in hex> <size> <mtime>" for a path without
// following a final symlink, or "missing".
const statScript = `if [ -e %[1]s ] || [ -L %[1]s ]; then stat -c '%%f %%s %%Y' %[1]s; else echo missing; fi`

// parseStat reads one "<mode hex> <size> <mtime>" line.
func parseStat(name, line string) (providers.FileInfo, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return providers.FileInfo{}, fmt.Errorf("unexpected stat output %q", line)
	}
	raw, err1 := strconv.ParseUint(f[0], 16, 32)
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	mtime, err3 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return providers.FileInfo{}, fmt.Errorf("unexpected stat output %q: %w", line, err)
	}
	fi := providers.FileInfo{Path: name, Size: size, Mode: fs.FileMode(raw & 0o777), ModTime: time.Unix(mtime, 0).UTC()}
	switch raw & 0o170000 {
	case 0o100000:
		fi.Type = providers.TypeFile
	case 0o040000:
		fi.Type, fi.Mode = providers.TypeDir, fi.Mode|fs.ModeDir
	case 0o120000:
		fi.Type, fi.Mode = providers.TypeSymlink, fi.Mode|fs.ModeSymlink
	default:
		fi.Type = providers.TypeOther
	}
	return fi, nil
}

func (p *Provider) Stat(ctx context.Context, id, name string) (providers.FileInfo, error) {
	if err := checkPath("stat", name); err != nil {
		return providers.FileInfo{}, err
	}
	if err := checkID(id); err != nil {
		return providers.FileInfo{}, err
	}
	p.touched(id)
	out, ok, err := p.channelStat(ctx, id, "lstat", name)
	if !ok {
		out, err = p.quick(ctx, id, fmt.Sprintf(statScript, shellPath(name)))
	}
	if err != nil {
		return providers.FileInfo{}, p.fileErr("stat", name, err)
	}
	if strings.TrimSpace(out) == "missing" {
		return providers.FileInfo{}, providers.Errorf(providers.ErrNotFound, "stat %q: no such file or directory", name)
	}
	fi, err := parseStat(name, strings.TrimSpace(out))
	if err != nil {
		return providers.FileInfo{}, providers.Errorf(providers.ErrUnavailable, "stat %q in devbox %s: %w", name, id, err)
	}
	return fi, nil
}

// channelStat answers a stat ("stat": a final symlink followed, or
// "lstat") with the helper on the devbox's channel, with the lines
// statScript and readCheckScript print. ok is false where there is no
// channel, or it broke: the caller runs the script instead.
func (p *Provider) channelStat(ctx context.Context, id, mode, name string) (out string, ok bool, err error) {
	c := p.channel(id)
	if c == nil {
		return "", false, nil
	}
	defer c.release()
	out, errOut, code, err := c.check(ctx, mode, name)
	switch {
	case err == nil && code == 0:
		return out, true, nil
	case err == nil:
		return "", true, &quickError{Exit: code, Stderr: strings.TrimSpace(errOut)}
	case ctx.Err() != nil:
		return "", true, ctx.Err()
	}
	go c.broke(context.WithoutCancel(ctx), err)
	return "", false, nil
}

// fileErr explains a failed housekeeping command on a path.
func (p *Provider) fileErr(op, name string, err error) error {
	var qe *quickError
	if errors.As(err, &qe) {
		if strings.Contains(strings.ToLower(qe.Stderr), "permission denied") {
			return providers.Errorf(providers.ErrInvalidArgument, "%s %q: permission denied", op, name)
		}
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: %s", op, name, qe.Stderr)
	}
	return err
}

// readCheckScript prints "<mode hex> <size> <mtime>" of what a path leads
// to (a final symlink followed), "dangling" or "missing". ReadFile runs it
// before any download: opening a FIFO blocks until a writer comes and a
// device streams without end, so only a regular file is opened at all.
const readCheckScript = `if [ -e %[1]s ]; then stat -L -c '%%f %%s %%Y' %[1]s; elif [ -L %[1]s ]; then echo dangling; else echo missing; fi`

// ReadFile checks what the path leads to (on the devbox's channel, else
// with one command), refuses anything but a regular file, then downloads at
// most the size it saw.
func (p *Provider) ReadFile(ctx context.Context, id, name string) (io.ReadCloser, providers.FileInfo, error) {
	if err := checkPath("read", name); err != nil {
		return nil, providers.FileInfo{}, err
	}
	if err := checkID(id); err != nil {
		return nil, providers.FileInfo{}, err
	}
	p.touched(id)
	out, ok, err := p.channelStat(ctx, id, "stat", name)
	if !ok {
		out, err = p.quick(ctx, id, fmt.Sprintf(readCheckScript, shellPath(name)))
	}
	if err != nil {
		return nil, providers.FileInfo{}, p.fileErr("read", name, err)
	}
	switch out = strings.TrimSpace(out); out {
	case "missing":
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrNotFound, "read %q: no such file", name)
	case "dangling":
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrNotFound, "read %q: a symlink to nothing", name)
	}
	info, err := parseStat(name, out)
	if err != nil {
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrUnavailable, "read %q in devbox %s: %w", name, id, err)
	}
	switch info.Type {
	case providers.TypeFile:
	case providers.TypeDir:
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: is a directory; use list_files", name)
	default:
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: not a regular file (a FIFO, device or socket); only regular files can be read", name)
	}
	d := &download{ctx: ctx, p: p, id: id, name: name, size: info.Size}
	if err := d.open(); err != nil {
		return nil, providers.FileInfo{}, err
	}
	return d, info, nil
}

// download reads a file with download_file. When the connection breaks
// part-way, it downloads again and skips what was already delivered (the
// API has no ranges), a few times at most.
type download struct {
	ctx     context.Context
	p       *Provider
	id      string
	name    string
	size    int64 // the file's size when checked: no more is read
	read    int64
	retries int
	body    io.ReadCloser
	cancel  context.CancelFunc
}

func (d *download) open() error {
	resp, cancel, err := d.p.open(d.ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + d.id + "/download_file",
		json: map[string]string{"path": d.name}, accept: "application/octet-stream", stream: true})
	if err != nil {
		if s := statusOf(err); s == http.StatusNotFound || s == http.StatusBadRequest {
			if _, gerr := d.p.devbox(d.ctx, d.id); gerr != nil {
				return gerr
			}
			if s == http.StatusNotFound {
				return providers.Errorf(providers.ErrNotFound, "read %q: no such file", d.name)
			}
		}
		return d.p.typed(d.ctx, "", fmt.Sprintf("read %q", d.name), err)
	}
	if d.read > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, d.read); err != nil {
			resp.Body.Close()
			cancel()
			return err
		}
	}
	d.body, d.cancel = resp.Body, cancel
	return nil
}

func (d *download) Read(b []byte) (int, error) {
	for {
		// A file that grows while it is read (a log being written) ends
		// at the size it had when checked.
		if d.read >= d.size {
			return 0, io.EOF
		}
		n, err := d.body.Read(b[:min(int64(len(b)), d.size-d.read)])
		d.read += int64(n)
		if err == nil || n > 0 {
			return n, nil
		}
		if err == io.EOF {
			if d.read != d.size {
				return 0, providers.Errorf(providers.ErrUnavailable, "read %q: got %d bytes of %d", d.name, d.read, d.size)
			}
			return 0, io.EOF
		}
		if d.ctx.Err() != nil || d.retries >= 3 {
			return 0, providers.Errorf(providers.ErrUnavailable, "read %q: the download broke after %d bytes: %w", d.name, d.read, err)
		}
		d.retries++
		d.Close()
		if oerr := d.open(); oerr != nil {
			return 0, oerr
		}
	}
}

func (d *download) Close() error {
	err := d.body.Close()
	d.cancel()
	return err
}

func (p *Provider) WriteFile(ctx context.Context, id, name string, data []byte, mode fs.FileMode) error {
	if err := checkPath("write", name); err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	p.touched(id)
	// Upload beside the target under a temporary name, then check the size
	// and move it into place: readers never see half a file.
	dir, base := path.Split(name)
	tmp := dir + "." + base + ".mcp-sandbox-" + newKey()[24:]
	if err := p.uploadTemp(ctx, id, tmp, data); err != nil {
		if s := statusOf(err); s >= 400 && s < 500 && s != http.StatusTooManyRequests {
			if _, gerr := p.devbox(ctx, id); gerr != nil {
				return gerr
			}
			if s != http.StatusUnauthorized && s != http.StatusForbidden {
				var ae *apiError
				errors.As(err, &ae)
				return providers.Errorf(providers.ErrInvalidArgument, "write %q: %s", name, ae.Message)
			}
		}
		return p.typed(ctx, id, fmt.Sprintf("write %q", name), err)
	}
	perm := mode.Perm()
	if perm == 0 {
		perm = 0o644
	}
	return p.place(ctx, id, tmp, name, len(data), perm)
}

// uploadTemp uploads a write's temporary file, and sees that nothing of it
// is left when the upload fails or the caller gives up. The upload itself
// does not end with ctx: an upload cut off after its last byte left may
// still land in the devbox after an answer nobody waits for, so that a
// removal right away could come first. When ctx ends, the call returns at
// once and the upload goes on alone, to be removed once it answered.
func (p *Provider) uploadTemp(ctx context.Context, id, tmp string, data []byte) error {
	done := make(chan error, 1)
	go func() { done <- p.upload(context.WithoutCancel(ctx), id, tmp, data) }()
	select {
	case err := <-done:
		if err != nil {
			p.removeTemp(ctx, id, tmp, statusOf(err) == 0)
		}
		return err
	case <-ctx.Done():
		go func() {
			if err := <-done; err == nil || statusOf(err) != 0 {
				p.removeTemp(ctx, id, tmp, false)
			} else {
				p.removeTemp(ctx, id, tmp, true)
			}
		}()
		return ctx.Err()
	}
}

// placeScript checks an upload's size and moves it into place; one stat
// gives the size and the mode, which usually needs no chmod: each process
// counts on a busy devbox. As a resume (the channel broke with a place in
// flight, its execution since ended), an upload that is gone was moved.
const placeScript = `t=%s; p=%s
RESUME
set -- $(stat -c '%%s %%a' "$t")
if [ "$1" != %d ]; then rm -f "$t"; echo "the upload arrived short" >&2; exit 1; fi
if [ -d "$p" ] && [ ! -L "$p" ]; then rm -f "$t"; echo "is a directory" >&2; exit 1; fi
{ [ "$2" = %o ] || chmod %o "$t"; } && mv -f "$t" "$p" || { rm -f "$t"; exit 1; }`

// place moves a write's upload over its target: by the helper on the
// devbox's channel where there is one, else with a command.
func (p *Provider) place(ctx context.Context, id, tmp, name string, size int, perm fs.FileMode) error {
	resume := false
	if c := p.channel(id); c != nil {
		_, errOut, code, err := c.check(ctx, "place", tmp, name, strconv.Itoa(size), strconv.FormatUint(uint64(perm), 8))
		c.release()
		switch {
		case err == nil && code == 0:
			return nil
		case err == nil:
			p.removeTemp(ctx, id, tmp, false) // the helper leaves it
			return p.fileErr("write", name, &quickError{Exit: code, Stderr: strings.TrimSpace(errOut)})
		case ctx.Err() != nil:
			// The place may still be done, or refused, in the devbox; the
			// removal may come before or after it: either way the target
			// is old or new, and nothing else is left.
			p.removeTemp(ctx, id, tmp, false)
			return ctx.Err()
		}
		// The channel broke or stalled with the place sent: once its
		// execution has surely ended, the upload still there says the
		// helper did not move it (it never removes one).
		c.broke(ctx, err)
		resume = true
	}
	return p.placeByCommand(ctx, id, tmp, name, size, perm, resume)
}

// placeByCommand places an upload with placeScript.
func (p *Provider) placeByCommand(ctx context.Context, id, tmp, name string, size int, perm fs.FileMode, resume bool) error {
	r := ""
	if resume {
		r = `[ -e "$t" ] || [ -L "$t" ] || exit 0`
	}
	script := strings.Replace(fmt.Sprintf(placeScript, shellPath(tmp), shellPath(name), size, perm, perm), "RESUME", r, 1)
	if _, err := p.quick(ctx, id, script); err != nil {
		p.removeTemp(ctx, id, tmp, false) // the move may not have run at all
		return p.fileErr("write", name, err)
	}
	return nil
}

// upload puts data at name with the API's binary upload.
func (p *Provider) upload(ctx context.Context, id, name string, data []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("path", name)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, path.Base(name)))
	h.Set("Content-Type", "application/octet-stream")
	part, _ := mw.CreatePart(h)
	part.Write(data)
	mw.Close()
	return p.call(ctx, &request{method: http.MethodPost, path: "/v1/devboxes/" + id + "/upload_file", body: body.Bytes(), contentType: mw.FormDataContentType()}, nil)
}

// removeTemp deletes a write's temporary file, even when ctx ended: a
// write cut off must leave nothing beside its target. again removes it a
// second time later, for an upload that failed without an answer: the
// API may still have been writing it.
func (p *Provider) removeTemp(ctx context.Context, id, tmp string, again bool) {
	// Briefly: an API that is down must not hold the write's error back.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := p.quick(rctx, id, "rm -f "+shellPath(tmp)); err != nil {
		p.log.Debug("runloop: cannot remove a temporary file", "devbox", id, "path", tmp, "err", err)
	}
	if again {
		time.AfterFunc(lateRemoval, func() { p.removeTemp(context.WithoutCancel(ctx), id, tmp, false) })
	}
}

// lateRemoval is when an upload that failed without an answer is removed
// again.
const lateRemoval = 30 * time.Second

// listScript prints one "<mode hex> <size> <mtime> <path>" line per entry
// under the directory, down to the given depth, or "missing" / "notdir".
const listScript = `p=%s
if [ ! -e "$p" ]; then echo missing; exit 0; fi
if [ ! -d "$p" ]; then echo notdir; exit 0; fi
cd -- "$p" && find . -mindepth 1 -maxdepth %d -exec stat -c '%%f %%s %%Y %%n' {} +`

// maxListing bounds the listing output read from the devbox.
const maxListing = 32 << 20

func (p *Provider) ListFiles(ctx context.Context, id, name string, depth, limit int) ([]providers.FileInfo, bool, error) {
	if name == "" {
		name = "."
	}
	if err := checkPath("list", name); err != nil {
		return nil, false, err
	}
	var out, errOut bytes.Buffer
	res, err := p.Exec(ctx, id, providers.ExecRequest{
		Command: fmt.Sprintf(listScript, shellPath(name), max(depth, 1)),
		Stdout:  &limitedBuffer{buf: &out, left: maxListing}, Stderr: &limitedBuffer{buf: &errOut, left: 64 << 10},
		Timeout: 2 * time.Minute,
	})
	if err != nil {
		return nil, false, err
	}
	switch strings.TrimSpace(out.String()) {
	case "missing":
		return nil, false, providers.Errorf(providers.ErrNotFound, "list %q: no such directory", name)
	case "notdir":
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	}
	if res.ExitCode != 0 && out.Len() == 0 {
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: %s", name, strings.TrimSpace(errOut.String()))
	}
	var ents []providers.FileInfo
	for line := range strings.Lines(out.String()) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 4)
		if len(f) < 4 || !strings.HasPrefix(f[3], "./") {
			continue // a name with a newline in it: not listed
		}
		fi, err := parseStat(strings.TrimPrefix(f[3], "./"), strings.Join(f[:3], " "))
		if err != nil {
			continue
		}
		ents = append(ents, fi)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Path < ents[j].Path })
	if limit > 0 && len(ents) > limit {
		return ents[:limit], true, nil
	}
	return ents, false, nil
}

// limitedBuffer keeps at most left bytes and drops the rest.
type limitedBuffer struct {
	buf  *bytes.Buffer
	left int
}

func (l *limitedBuffer) Write(b []byte) (int, error) {
	n := min(len(b), l.left)
	l.buf.Write(b[:n])
	l.left -= n
	return len(b), nil
}
