package e2bfake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"path/filepath"

	"connectrpc.com/connect"

	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/filesystem/filesystemconnect"
	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/internal/envdpb/process/processconnect"
)

type ctxKey struct{}

func sandboxFrom(ctx context.Context) *sandbox { return ctx.Value(ctxKey{}).(*sandbox) }

func (s *Server) envdMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	m.HandleFunc("GET /files", s.download)
	m.HandleFunc("POST /files", s.upload)
	m.Handle(processconnect.NewProcessHandler(&processService{s: s}))
	m.Handle(filesystemconnect.NewFilesystemHandler(&filesystemService{}))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		envdError(w, http.StatusNotFound, "%s %s is not implemented by this fake", r.Method, r.URL.Path)
	})
	return m
}

// serveEnvd plays E2B's proxy and the sandbox's envd: unknown or dead
// sandboxes get the proxy's 502, a wrong access token envd's 401.
func (s *Server) serveEnvd(w http.ResponseWriter, r *http.Request, id string) {
	sb := s.lookup(id)
	if sb == nil {
		writeJSON(w, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox was not found", "code": http.StatusBadGateway})
		return
	}
	// envd lets /health through without the token; /files may use a signed
	// URL instead, which this fake does not issue, so it wants the token.
	if r.URL.Path != "/health" && r.Header.Get("X-Access-Token") != sb.Token {
		envdError(w, http.StatusUnauthorized, "invalid access token")
		return
	}
	s.envd.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, sb)))
}

func envdError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]any{"code": status, "message": fmt.Sprintf(format, args...)})
}

// --- files over HTTP -----------------------------------------------------

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	p := r.URL.Query().Get("path")
	rel, abs, err := sb.Resolve(p)
	if err != nil {
		envdError(w, http.StatusBadRequest, "%v", err)
		return
	}
	root, err := sb.Root()
	if err != nil {
		envdError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	defer root.Close()
	f, err := root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		envdError(w, http.StatusNotFound, "path '%s' does not exist", abs)
		return
	} else if err != nil {
		envdError(w, http.StatusBadRequest, "cannot open '%s': %v", abs, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		envdError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if fi.IsDir() {
		envdError(w, http.StatusBadRequest, "path '%s' is a directory", abs)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": path.Base(abs)}))
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// upload takes multipart parts named "file" (target: the path query, else the
// part's full filename) or an octet-stream body (target: the path query).
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	sb := sandboxFrom(r.Context())
	if cut := s.faults.TakeCut(cutUpload); cut >= 0 {
		// Write what comes before the cut, then drop the connection
		// without an answer.
		r.Body = io.NopCloser(io.LimitReader(r.Body, int64(cut)))
		w = discardResponse{}
		defer panic(http.ErrAbortHandler)
	}
	target := r.URL.Query().Get("path")
	type written struct {
		Path string `json:"path"`
		Name string `json:"name"`
		Type string `json:"type"`
	}
	var out []written
	save := func(p string, body io.Reader) bool {
		rel, abs, err := sb.Resolve(p)
		if err == nil && rel == "." {
			err = fmt.Errorf("path '%s' is a directory", abs)
		}
		if err == nil {
			err = writeFile(sb, rel, body)
		}
		if err != nil {
			envdError(w, http.StatusBadRequest, "cannot write '%s': %v", p, err)
			return false
		}
		out = append(out, written{Path: abs, Name: path.Base(abs), Type: "file"})
		return true
	}
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mt == "multipart/form-data":
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				envdError(w, http.StatusBadRequest, "invalid multipart body: %v", err)
				return
			}
			if part.FormName() != "file" {
				continue
			}
			p := target
			if p == "" {
				// Part.FileName() drops directories; envd uses the full name.
				_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
				p = dp["filename"]
			}
			if p == "" {
				envdError(w, http.StatusBadRequest, "no path given for a file part")
				return
			}
			if !save(p, part) {
				return
			}
		}
	case target != "":
		if !save(target, r.Body) {
			return
		}
	default:
		envdError(w, http.StatusBadRequest, "path is required for a %q body", mt)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// discardResponse swallows the answer to an upload that is being cut.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (discardResponse) WriteHeader(int)             {}

// writeFile creates parents and writes the target in place, as envd does
// (it truncates and copies): an upload cut off half way leaves a prefix,
// which is what a client must guard against.
func writeFile(sb *sandbox, rel string, body io.Reader) error {
	root, err := sb.Root()
	if err != nil {
		return err
	}
	defer root.Close()
	if d := filepath.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if fi, err := root.Lstat(rel); err == nil && fi.IsDir() {
		return errors.New("is a directory")
	}
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// connectError maps an os error to the codes envd uses.
func connectError(op, p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s: path '%s' does not exist", op, p))
	case errors.Is(err, fs.ErrExist):
		return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("%s: path '%s' already exists", op, p))
	case errors.Is(err, fs.ErrPermission):
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s '%s': %v", op, p, err))
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s '%s': %v", op, p, err))
}
