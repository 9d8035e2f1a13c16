package daytonafake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serveToolbox routes /toolbox/{sandboxId}/... to the sandbox's daemon.
func (s *Server) serveToolbox(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/toolbox/")
	id, sub, _ := strings.Cut(rest, "/")
	sb := s.lookup(id)
	if sb == nil || sb.ID != id {
		toolboxError(w, r, http.StatusNotFound, "NOT_FOUND", "sandbox %s not found", id)
		return
	}
	if st := sb.State(); st != "started" {
		// The proxy cannot reach a daemon that is not running.
		toolboxError(w, r, http.StatusBadGateway, "BAD_GATEWAY", "sandbox %s is not running (state %s)", id, st)
		return
	}
	r2 := r.Clone(withSandbox(r.Context(), sb))
	r2.URL.Path = "/" + sub
	s.toolbox.ServeHTTP(w, r2)
}

func (s *Server) toolboxMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /work-dir", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"dir": sandboxFrom(r.Context()).Home})
	})
	m.HandleFunc("GET /user-home-dir", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"dir": sandboxFrom(r.Context()).Home})
	})
	m.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": "daytonafake"})
	})
	m.HandleFunc("GET /files", s.listFiles)
	m.HandleFunc("GET /files/", s.listFiles)
	m.HandleFunc("GET /files/info", s.fileInfo)
	m.HandleFunc("POST /files/folder", s.createFolder)
	m.HandleFunc("DELETE /files", s.deleteFile)
	m.HandleFunc("POST /files/move", s.moveFile)
	m.HandleFunc("POST /files/permissions", s.setPermissions)
	m.HandleFunc("GET /files/download", s.download)
	m.HandleFunc("POST /files/bulk-download", s.bulkDownload)
	m.HandleFunc("POST /files/bulk-upload", s.bulkUpload)
	m.HandleFunc("POST /process/execute", s.execute)
	m.HandleFunc("POST /process/session", s.createSession)
	m.HandleFunc("GET /process/session", s.listSessions)
	m.HandleFunc("GET /process/session/{sid}", s.getSession)
	m.HandleFunc("DELETE /process/session/{sid}", s.deleteSession)
	m.HandleFunc("POST /process/session/{sid}/exec", s.sessionExec)
	m.HandleFunc("GET /process/session/{sid}/command/{cid}", s.getCommand)
	m.HandleFunc("GET /process/session/{sid}/command/{cid}/logs", s.commandLogs)
	m.HandleFunc("POST /process/session/{sid}/command/{cid}/input", s.commandInput)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		toolboxError(w, r, http.StatusNotFound, "NOT_FOUND", "%s %s is not implemented by this fake", r.Method, r.URL.Path)
	})
	return m
}

// rel turns a path the client sent into one relative to the sandbox's
// directory: relative paths start there (the daemon's working directory),
// absolute ones must lie below it. (Paths in the sandbox's TMPDIR are
// served too, where noted: see fakebox.Box.TmpRel.)
func (sb *sandbox) rel(p string) (string, error) {
	if p == "" {
		return "", errors.New("path is required")
	}
	rel, _, err := sb.Resolve(p)
	return rel, err
}

// fsError answers a file-system failure the way the daemon does.
func fsError(w http.ResponseWriter, r *http.Request, p string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		toolboxError(w, r, http.StatusNotFound, "FILE_NOT_FOUND", "%s: no such file or directory", p)
	case errors.Is(err, fs.ErrPermission):
		toolboxError(w, r, http.StatusForbidden, "FILE_ACCESS_DENIED", "%s: permission denied", p)
	default:
		toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "%s: %v", p, err)
	}
}

type fileInfoJSON struct {
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	Mode        string `json:"mode"`
	ModTime     string `json:"modTime"`
	ModifiedAt  string `json:"modifiedAt"`
	IsDir       bool   `json:"isDir"`
	Owner       string `json:"owner"`
	Group       string `json:"group"`
	Permissions string `json:"permissions"`
	Path        string `json:"path,omitempty"`
}

// infoJSON describes a file as the daemon does: after following symlinks.
func infoJSON(fi fs.FileInfo, abs string) fileInfoJSON {
	owner, group := "0", "0"
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner, group = strconv.FormatUint(uint64(st.Uid), 10), strconv.FormatUint(uint64(st.Gid), 10)
	}
	mt := fi.ModTime().Format(time.RFC3339Nano)
	return fileInfoJSON{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode().String(), ModTime: mt, ModifiedAt: mt,
		IsDir: fi.IsDir(), Owner: owner, Group: group, Permissions: fmt.Sprintf("%04o", fi.Mode().Perm()), Path: abs}
}

// withPath resolves the "path" query parameter and opens the root.
func withPath(w http.ResponseWriter, r *http.Request, param string) (*sandbox, *os.Root, string, bool) {
	sb := sandboxFrom(r.Context())
	p := r.URL.Query().Get(param)
	rel, err := sb.rel(p)
	open := sb.Root
	if t, ok := sb.TmpRel(p); err != nil && ok {
		rel, err, open = t, nil, sb.TmpRoot
	}
	if err != nil {
		toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "%s: %v", p, err)
		return nil, nil, "", false
	}
	root, err := open()
	if err != nil {
		fsError(w, r, p, err)
		return nil, nil, "", false
	}
	return sb, root, rel, true
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("path") == "" {
		q := r.URL.Query()
		q.Set("path", ".")
		r.URL.RawQuery = q.Encode()
	}
	sb, root, rel, ok := withPath(w, r, "path")
	if !ok {
		return
	}
	defer root.Close()
	d, err := root.Open(rel)
	if err != nil {
		fsError(w, r, rel, err)
		return
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		fsError(w, r, rel, err)
		return
	}
	out := make([]fileInfoJSON, 0, len(ents))
	for _, e := range ents {
		name := path.Join(rel, e.Name())
		fi, err := root.Stat(name)
		if err != nil {
			continue // as the daemon does: a dangling symlink is left out
		}
		out = append(out, infoJSON(fi, path.Join(sb.Home, name)))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) fileInfo(w http.ResponseWriter, r *http.Request) {
	sb, root, rel, ok := withPath(w, r, "path")
	if !ok {
		return
	}
	defer root.Close()
	fi, err := root.Stat(rel)
	if err != nil {
		fsError(w, r, r.URL.Query().Get("path"), err)
		return
	}
	writeJSON(w, http.StatusOK, infoJSON(fi, path.Join(sb.Home, rel)))
}

func parseMode(s string, def fs.FileMode) (fs.FileMode, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("invalid mode %q", s)
	}
	return fs.FileMode(n), nil
}

func (s *Server) createFolder(w http.ResponseWriter, r *http.Request) {
	_, root, rel, ok := withPath(w, r, "path")
	if !ok {
		return
	}
	defer root.Close()
	mode, err := parseMode(r.URL.Query().Get("mode"), 0o755)
	if err != nil {
		toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "%v", err)
		return
	}
	if err := root.MkdirAll(rel, mode); err != nil {
		fsError(w, r, rel, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) {
	_, root, rel, ok := withPath(w, r, "path")
	if !ok {
		return
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if err != nil {
		fsError(w, r, rel, err)
		return
	}
	if fi.IsDir() && r.URL.Query().Get("recursive") != "true" {
		toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "%s is a directory; set recursive=true", rel)
		return
	}
	if err := root.RemoveAll(rel); err != nil {
		fsError(w, r, rel, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) moveFile(w http.ResponseWriter, r *http.Request) {
	sb, root, src, ok := withPath(w, r, "source")
	if !ok {
		return
	}
	defer root.Close()
	dst, err := sb.rel(r.URL.Query().Get("destination"))
	if err != nil {
		toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "destination: %v", err)
		return
	}
	if _, err := root.Lstat(dst); err == nil {
		toolboxError(w, r, http.StatusConflict, "CONFLICT", "destination %s already exists", dst)
		return
	}
	if err := root.Rename(src, dst); err != nil {
		fsError(w, r, src, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) setPermissions(w http.ResponseWriter, r *http.Request) {
	_, root, rel, ok := withPath(w, r, "path")
	if !ok {
		return
	}
	defer root.Close()
	if m := r.URL.Query().Get("mode"); m != "" {
		mode, err := parseMode(m, 0)
		if err != nil {
			toolboxError(w, r, http.StatusBadRequest, "BAD_REQUEST", "%v", err)
			return
		}
		if err := root.Chmod(rel, mode); err != nil {
			fsError(w, r, rel, err)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// openRegular opens a regular file (after symlinks) for download.
func openRegular(root *os.Root, rel string) (*os.File, fs.FileInfo, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0) // a FIFO must not block the open
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("not a regular file (%s)", fi.Mode())
	}
	return f, fi, nil
}

// download serves GET /files/download: the raw bytes of one file.
func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	_, root, rel, ok := withPath(w, r, "path")
	if !ok {
		return
	}
	defer root.Close()
	f, fi, err := openRegular(root, rel)
	if err != nil {
		fsError(w, r, r.URL.Query().Get("path"), err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	s.copyMaybeCut(w, f)
}

// copyMaybeCut copies the file, or drops the connection part-way when a
// cut was injected.
func (s *Server) copyMaybeCut(w http.ResponseWriter, f io.Reader) {
	if cut := s.faults.TakeCut(cutDownload); cut >= 0 {
		io.CopyN(w, f, int64(cut))
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	io.Copy(w, f)
}

// bulkDownload answers {paths} with one multipart part per path: the file,
// or a JSON error, as the daemon does.
func (s *Server) bulkDownload(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	var req struct {
		Paths []string `json:"paths"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Paths) == 0 {
		toolboxError(w, r, http.StatusBadRequest, "INVALID_REQUEST_BODY", "body must be {\"paths\": [...]}")
		return
	}
	root, err := sb.Root()
	if err != nil {
		fsError(w, r, ".", err)
		return
	}
	defer root.Close()
	mw := multipart.NewWriter(w)
	mw.SetBoundary("DAYTONA-FILE-BOUNDARY")
	w.Header().Set("Content-Type", mw.FormDataContentType())
	w.WriteHeader(http.StatusOK)
	for _, p := range req.Paths {
		status, code, msg := 0, "", ""
		var f *os.File
		var fi fs.FileInfo
		rel, err := sb.rel(p)
		if err == nil {
			f, fi, err = openRegular(root, rel)
		}
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			status, code, msg = 404, "FILE_NOT_FOUND", p+": no such file or directory"
		default:
			status, code, msg = 400, "BAD_REQUEST", p+": "+err.Error()
		}
		h := textproto.MIMEHeader{}
		if status != 0 {
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="error"; filename=%q`, p))
			h.Set("Content-Type", "application/json")
			part, _ := mw.CreatePart(h)
			json.NewEncoder(part).Encode(map[string]any{"statusCode": status, "message": msg, "code": code})
			continue
		}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, p))
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		part, _ := mw.CreatePart(h)
		pw := partWriter{part, w}
		s.copyMaybeCut(pw, f)
		f.Close()
	}
	mw.Close()
}

// partWriter lets copyMaybeCut flush and abort through a multipart part.
type partWriter struct {
	io.Writer
	w http.ResponseWriter
}

func (p partWriter) Header() http.Header         { return p.w.Header() }
func (p partWriter) WriteHeader(int)             {}
func (p partWriter) Flush()                      { p.w.(http.Flusher).Flush() }
func (p partWriter) Write(b []byte) (int, error) { return p.Writer.Write(b) }

// bulkUpload takes multipart fields files[i].path then files[i].file; each
// file is written to a temp file beside its destination and renamed over
// it (parents created, mode 0644), as the daemon does.
func (s *Server) bulkUpload(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	mr, err := r.MultipartReader()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []string{"invalid multipart form"}})
		return
	}
	root, err := sb.Root()
	if err != nil {
		fsError(w, r, ".", err)
		return
	}
	defer root.Close()
	dests := map[string]string{}
	var errs []string
	files := []map[string]any{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("reading part: %v", err))
			break
		}
		name := part.FormName()
		idx := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(name, "files["), "].path"), "].file")
		switch {
		case strings.HasSuffix(name, ".path"):
			b, _ := io.ReadAll(io.LimitReader(part, 1<<16))
			if d := strings.TrimSpace(string(b)); d != "" {
				dests[idx] = d
			} else {
				errs = append(errs, fmt.Sprintf("path[%s]: empty path", idx))
			}
		case strings.HasSuffix(name, ".file"):
			dest, ok := dests[idx]
			if !ok {
				errs = append(errs, fmt.Sprintf("file[%s]: missing .path metadata", idx))
				continue
			}
			n, err := writeUpload(sb, dest, part)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", dest, err))
				continue
			}
			files = append(files, map[string]any{"path": dest, "bytes": n})
		}
	}
	if len(errs) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": errs, "files": files})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": files})
}

// writeUpload writes through a temp file renamed over the destination
// (fakebox.Box.WriteFile), mode 0644, and counts the bytes.
func writeUpload(sb *sandbox, dest string, src io.Reader) (int64, error) {
	cr := &countingReader{r: src}
	write := sb.WriteFile
	rel, err := sb.rel(dest)
	if t, ok := sb.TmpRel(dest); err != nil && ok {
		rel, err, write = t, nil, sb.WriteTmpFile
	}
	if err != nil {
		return 0, err
	}
	if err := write(rel, cr, 0o644); err != nil {
		return 0, err
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}
