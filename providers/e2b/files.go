package e2b

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	fspb "github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem"
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

// filesErr reads envd's JSON error from the /files endpoints.
func (p *Provider) filesErr(ctx context.Context, c *conn, op, name string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(body))
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return providers.Errorf(providers.ErrNotFound, "%s %q: no such file or directory", op, name)
	case http.StatusBadRequest, http.StatusForbidden:
		return providers.Errorf(providers.ErrInvalidArgument, "%s %q: %s", op, name, e.Message)
	case http.StatusInsufficientStorage:
		return providers.Errorf(providers.ErrTooLarge, "%s %q: the sandbox's disk is full", op, name)
	case http.StatusBadGateway, http.StatusUnauthorized:
		if gone := p.gone(ctx, c.id); gone != nil {
			return gone
		}
	}
	return providers.Errorf(providers.ErrUnavailable, "%s %q in sandbox %s: envd answered %d: %s", op, name, c.id, resp.StatusCode, e.Message)
}

func (p *Provider) ReadFile(ctx context.Context, id, name string) (io.ReadCloser, providers.FileInfo, error) {
	if err := checkPath("read", name); err != nil {
		return nil, providers.FileInfo{}, err
	}
	info, err := p.Stat(ctx, id, name)
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
	c, err := p.conn(ctx, id)
	if err != nil {
		return nil, providers.FileInfo{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/files?"+url.Values{"path": {c.resolve(name)}}.Encode(), nil)
	if err != nil {
		return nil, providers.FileInfo{}, providers.Errorf(providers.ErrInvalidArgument, "read %q: %w", name, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, providers.FileInfo{}, p.envdErr(ctx, id, "read", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, providers.FileInfo{}, p.filesErr(ctx, c, "read", name, resp)
	}
	if info.Type == providers.TypeSymlink { // report what was read
		info.Type = providers.TypeFile
		if resp.ContentLength >= 0 {
			info.Size = resp.ContentLength
		}
	}
	return resp.Body, info, nil
}

// tempSuffix ends the names of the temp files writes go through.
const tempSuffix = ".mcp-sandbox-tmp"

// WriteFile uploads into a temp file beside the target, checks that all of
// it arrived, and moves it over the target: envd writes an upload in place,
// so a request cut off half way would otherwise leave a prefix where the
// old file was.
func (p *Provider) WriteFile(ctx context.Context, id, name string, data []byte, mode fs.FileMode) error {
	if err := checkPath("write", name); err != nil {
		return err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return err
	}
	target := path.Clean(c.resolve(name))
	if st, err := c.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: target})); err == nil {
		e := st.Msg.GetEntry()
		switch {
		case e.GetType() == fspb.FileType_FILE_TYPE_DIRECTORY && e.SymlinkTarget == nil:
			return providers.Errorf(providers.ErrInvalidArgument, "write %q: is a directory", name)
		case mode == 0 && e.GetType() == fspb.FileType_FILE_TYPE_FILE:
			mode = fs.FileMode(e.GetMode()).Perm() // keep an existing script executable
		}
	}
	if mode == 0 {
		mode = 0o644
	}
	nonce := make([]byte, 4)
	crand.Read(nonce)
	tmp := path.Join(path.Dir(target), "."+path.Base(target)+"."+hex.EncodeToString(nonce)+tempSuffix)
	if err := p.writeTemp(ctx, c, name, tmp, data, mode); err != nil {
		// The caller may have given up: clean up on a context of its own.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		c.fs.Remove(rmCtx, connect.NewRequest(&fspb.RemoveRequest{Path: tmp}))
		return err
	}
	return nil
}

// writeTemp uploads data to tmp, checks its size, sets its mode and moves it
// over target.
func (p *Provider) writeTemp(ctx context.Context, c *conn, name, tmp string, data []byte, mode fs.FileMode) error {
	if err := p.uploadTemp(ctx, c, name, tmp, data); err != nil {
		return err
	}
	st, err := c.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: tmp}))
	if err != nil {
		return p.envdErr(ctx, c.id, "write", name, err)
	}
	if n := st.Msg.GetEntry().GetSize(); n != int64(len(data)) {
		return providers.Errorf(providers.ErrUnavailable, "write %q: %d of %d bytes arrived; the file is unchanged, write it again", name, n, len(data))
	}
	// envd writes with its default mode (0644); anything else takes a chmod.
	if perm := mode.Perm(); perm != 0o644 {
		var errOut bytes.Buffer
		res, err := p.Exec(ctx, c.id, providers.ExecRequest{
			Command: fmt.Sprintf("chmod %o %s", perm, providers.ShellQuote(tmp)), Stderr: &errOut,
		})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return providers.Errorf(providers.ErrInvalidArgument, "write %q: chmod %o failed: %s", name, perm, strings.TrimSpace(errOut.String()))
		}
	}
	if _, err := c.fs.Move(ctx, connect.NewRequest(&fspb.MoveRequest{Source: tmp, Destination: path.Clean(c.resolve(name))})); err != nil {
		return p.envdErr(ctx, c.id, "write", name, err)
	}
	return nil
}

// uploadTimeout bounds an upload that goes on after its caller gave up.
const uploadTimeout = 5 * time.Minute

// uploadTemp uploads a write's temporary file. The upload does not end with
// ctx: one cut off after its last byte left may still land in the sandbox
// after an answer nobody waits for, so that WriteFile's removal of the temp
// file could come first. When ctx ends, the call returns at once and the
// upload goes on alone, its file removed once it answered.
func (p *Provider) uploadTemp(ctx context.Context, c *conn, name, tmp string, data []byte) error {
	done := make(chan error, 1)
	go func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), uploadTimeout)
		defer cancel()
		done <- p.upload(uctx, c, name, tmp, data)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		go func() {
			<-done
			rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			c.fs.Remove(rmCtx, connect.NewRequest(&fspb.RemoveRequest{Path: tmp}))
		}()
		return ctx.Err()
	}
}

// upload sends data to tmp as E2B's SDK sends it: one multipart part named
// "file" whose filename is the path; envd creates parents and writes the
// file.
func (p *Provider) upload(ctx context.Context, c *conn, name, tmp string, data []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, tmp))
	h.Set("Content-Type", "application/octet-stream")
	part, _ := mw.CreatePart(h)
	part.Write(data)
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/files?"+url.Values{"path": {tmp}}.Encode(), &body)
	if err != nil {
		return providers.Errorf(providers.ErrInvalidArgument, "write %q: %w", name, err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.http.Do(req)
	if err != nil {
		return p.envdErr(ctx, c.id, "write", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return p.filesErr(ctx, c, "write", name, resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

func (p *Provider) Stat(ctx context.Context, id, name string) (providers.FileInfo, error) {
	if err := checkPath("stat", name); err != nil {
		return providers.FileInfo{}, err
	}
	c, err := p.conn(ctx, id)
	if err != nil {
		return providers.FileInfo{}, err
	}
	res, err := c.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: c.resolve(name)}))
	if err != nil {
		return providers.FileInfo{}, p.envdErr(ctx, id, "stat", name, err)
	}
	return fileInfo(name, res.Msg.GetEntry()), nil
}

func fileInfo(name string, e *fspb.EntryInfo) providers.FileInfo {
	fi := providers.FileInfo{Path: name, Size: e.GetSize(), Mode: fs.FileMode(e.GetMode()).Perm()}
	if e.ModifiedTime != nil {
		fi.ModTime = e.ModifiedTime.AsTime().UTC()
	}
	// envd describes a symlink by its target, and says so in symlink_target.
	if e.SymlinkTarget != nil {
		fi.Type, fi.Mode = providers.TypeSymlink, fi.Mode|fs.ModeSymlink
		return fi
	}
	switch e.GetType() {
	case fspb.FileType_FILE_TYPE_FILE:
		fi.Type = providers.TypeFile
	case fspb.FileType_FILE_TYPE_DIRECTORY:
		fi.Type, fi.Mode = providers.TypeDir, fi.Mode|fs.ModeDir
	case fspb.FileType_FILE_TYPE_SYMLINK:
		fi.Type, fi.Mode = providers.TypeSymlink, fi.Mode|fs.ModeSymlink
	default:
		fi.Type = providers.TypeOther
	}
	return fi
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
	st, err := c.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: dir}))
	if err != nil {
		return nil, false, p.envdErr(ctx, id, "list", name, err)
	}
	if t := st.Msg.GetEntry().GetType(); t != fspb.FileType_FILE_TYPE_DIRECTORY && t != fspb.FileType_FILE_TYPE_SYMLINK {
		return nil, false, providers.Errorf(providers.ErrInvalidArgument, "list %q: not a directory", name)
	}
	res, err := c.fs.ListDir(ctx, connect.NewRequest(&fspb.ListDirRequest{Path: dir, Depth: uint32(max(depth, 1))}))
	if err != nil {
		return nil, false, p.envdErr(ctx, id, "list", name, err)
	}
	// envd answers with absolute paths; report them relative to the listed
	// directory, in lexical order.
	bases := []string{dir, path.Clean(st.Msg.GetEntry().GetPath())}
	out := make([]providers.FileInfo, 0, len(res.Msg.GetEntries()))
	for _, e := range res.Msg.GetEntries() {
		rel := e.GetName()
		for _, b := range bases {
			if r, ok := strings.CutPrefix(path.Clean(e.GetPath()), strings.TrimSuffix(b, "/")+"/"); ok {
				rel = r
				break
			}
		}
		out = append(out, fileInfo(rel, e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	if limit > 0 && len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
