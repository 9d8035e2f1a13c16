package runloopfake

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// resolve turns a path from a request into one relative to the devbox's
// home, the tree the fake serves files from (with the devbox's own TMPDIR,
// see fakebox.Box.TmpRel): relative paths and "~/" start there, and
// absolute paths must lie inside it.
func (d *devbox) resolve(p string) (string, error) {
	if p == "" {
		return "", errors.New("path is empty")
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok || p == "~" {
		p = rest
	}
	rel, _, err := d.box.Resolve(p)
	return rel, err
}

func fileError(w http.ResponseWriter, name string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		apiError(w, http.StatusNotFound, "File not found: %s", name)
	case errors.Is(err, fs.ErrPermission):
		apiError(w, http.StatusForbidden, "Permission denied: %s", name)
	default:
		apiError(w, http.StatusBadRequest, "%s: %v", name, err)
	}
}

// writeFile replaces name atomically, creating missing parent directories.
func (d *devbox) writeFile(name string, r io.Reader) error {
	rel, err := d.resolve(name)
	if t, ok := d.box.TmpRel(name); err != nil && ok {
		return d.box.WriteTmpFile(t, r, 0o644)
	}
	if err != nil {
		return err
	}
	return d.box.WriteFile(rel, r, 0o644)
}

func (d *devbox) openFile(name string) (*os.File, error) {
	rel, err := d.resolve(name)
	open := d.box.Root // no path, ".." or symlink leaves it
	if t, ok := d.box.TmpRel(name); err != nil && ok {
		rel, err, open = t, nil, d.box.TmpRoot
	}
	if err != nil {
		return nil, err
	}
	root, err := open()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		f.Close()
		if err == nil {
			err = errors.New("is a directory")
		}
		return nil, err
	}
	return f, nil
}

func (s *Server) writeFileContents(w http.ResponseWriter, r *http.Request, d *devbox) {
	var p struct {
		FilePath string `json:"file_path"`
		Contents string `json:"contents"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	if err := d.writeFile(p.FilePath, strings.NewReader(p.Contents)); err != nil {
		fileError(w, p.FilePath, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devbox_id": d.ID, "exit_status": 0, "stdout": "", "stderr": ""})
}

// readFileContents answers with the file as text/plain, which the SDK
// returns as a string.
func (s *Server) readFileContents(w http.ResponseWriter, r *http.Request, d *devbox) {
	var p struct {
		FilePath string `json:"file_path"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	f, err := d.openFile(p.FilePath)
	if err != nil {
		fileError(w, p.FilePath, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.Copy(w, f)
}

// uploadFile takes multipart/form-data with a "path" field and a "file" part.
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request, d *devbox) {
	mr, err := r.MultipartReader()
	if err != nil {
		apiError(w, http.StatusBadRequest, "upload_file wants multipart/form-data: %v", err)
		return
	}
	var name string
	var wrote bool
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad multipart body: %v", err)
			return
		}
		switch part.FormName() {
		case "path":
			b, _ := io.ReadAll(io.LimitReader(part, 4096))
			name = string(b)
		case "file":
			if name == "" {
				apiError(w, http.StatusBadRequest, "the path field must come before the file part")
				return
			}
			var body io.Reader = part
			if ms, ok := s.faults.Take(slowUpload); ok {
				data, err := io.ReadAll(part)
				if err != nil {
					apiError(w, http.StatusBadRequest, "bad multipart body: %v", err)
					return
				}
				time.Sleep(time.Duration(ms) * time.Millisecond) // the client may be gone: the file lands anyway
				body = bytes.NewReader(data)
			}
			if err := d.writeFile(name, body); err != nil {
				fileError(w, name, err)
				return
			}
			wrote = true
		}
	}
	if !wrote {
		apiError(w, http.StatusBadRequest, "upload_file needs a path field and a file part")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// downloadFile answers with the file's bytes; a cut-download fault drops
// the connection part-way.
func (s *Server) downloadFile(w http.ResponseWriter, r *http.Request, d *devbox) {
	var p struct {
		Path string `json:"path"`
	}
	if !readJSON(w, r, &p) {
		return
	}
	f, err := d.openFile(p.Path)
	if err != nil {
		fileError(w, p.Path, err)
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	if cut := s.faults.TakeCut(cutDownload); cut >= 0 && int64(cut) < st.Size() {
		io.CopyN(w, f, int64(cut))
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	io.Copy(w, f)
}
