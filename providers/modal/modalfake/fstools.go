package modalfake

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// fsRequest is the JSON argument of the fs-tools helper: exactly one
// operation, named by its key.
type fsRequest struct {
	WriteFile     *struct{ Path string } `json:"WriteFile"`
	ReadFile      *struct{ Path string } `json:"ReadFile"`
	ListFiles     *struct{ Path string } `json:"ListFiles"`
	Stat          *struct{ Path string } `json:"Stat"`
	MakeDirectory *struct {
		Path    string
		Parents bool
	} `json:"MakeDirectory"`
	Remove *struct {
		Path      string
		Recursive bool
	} `json:"Remove"`
}

// FileEntry is one entry as fs-tools prints it (ListFiles, Stat).
type FileEntry struct {
	Name          string  `json:"name"`
	Path          string  `json:"path"`
	Type          string  `json:"type"` // "file", "directory", "symlink"
	Size          int64   `json:"size"`
	Mode          uint32  `json:"mode"`
	Permissions   string  `json:"permissions"`
	Owner         string  `json:"owner"`
	Group         string  `json:"group"`
	ModifiedTime  float64 `json:"modified_time"`
	SymlinkTarget *string `json:"symlink_target"`
}

// fsError is the helper's failure report, printed as JSON on stderr.
type fsError struct {
	Kind    string `json:"error_kind"`
	Message string `json:"message"`
	Detail  string `json:"detail"`
}

func (e *fsError) Error() string { return e.Kind + ": " + e.Message }

func fsErrorFrom(err error) *fsError {
	var fe *fsError
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.Is(err, fs.ErrNotExist):
		return &fsError{"NotFound", "No such file or directory", err.Error()}
	case errors.Is(err, syscall.EISDIR):
		return &fsError{"IsDirectory", "Is a directory", err.Error()}
	case errors.Is(err, syscall.ENOTDIR):
		return &fsError{"NotDirectory", "Not a directory", err.Error()}
	case errors.Is(err, fs.ErrExist):
		return &fsError{"PathAlreadyExists", "Path already exists", err.Error()}
	case errors.Is(err, syscall.ENOTEMPTY):
		return &fsError{"DirectoryNotEmpty", "Directory not empty", err.Error()}
	case errors.Is(err, fs.ErrPermission), strings.Contains(err.Error(), "escapes from parent"), strings.Contains(err.Error(), "path escapes"):
		return &fsError{"PermissionDenied", "Permission denied", err.Error()}
	}
	return &fsError{"Other", err.Error(), ""}
}

// runFSTools emulates /__modal/.bin/modal-sandbox-fs-tools, confined to the
// sandbox's directory: paths must be absolute and lie inside it.
func runFSTools(sb *sandbox, args []string, stdin *io.PipeReader, stdout, stderr io.Writer, e *execution) {
	err := fsTools(sb, args, stdin, stdout)
	// Whatever was not read is refused from now on.
	stdin.CloseWithError(io.ErrClosedPipe)
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	if err != nil {
		b, _ := json.Marshal(fsErrorFrom(err))
		stderr.Write(b)
		e.exit(1, 0)
		return
	}
	e.exit(0, 0)
}

func fsTools(sb *sandbox, args []string, stdin io.Reader, stdout io.Writer) error {
	var req fsRequest
	if len(args) != 1 || json.Unmarshal([]byte(args[0]), &req) != nil {
		return &fsError{"InvalidArgument", "expected one JSON operation argument", strings.Join(args, " ")}
	}
	root, err := sb.box.Root()
	if err != nil {
		return err
	}
	defer root.Close()
	rel := func(p string) (string, error) {
		if !path.IsAbs(p) {
			return "", &fsError{"InvalidArgument", "path must be absolute", p}
		}
		r, _, err := sb.box.Resolve(p)
		if err != nil {
			return "", &fsError{"PermissionDenied", "Permission denied (outside the fake sandbox)", err.Error()}
		}
		return r, nil
	}
	switch {
	case req.WriteFile != nil:
		r, err := rel(req.WriteFile.Path)
		if err != nil {
			return err
		}
		if fi, err := root.Stat(r); err == nil && fi.IsDir() {
			return &fsError{"IsDirectory", "Is a directory", req.WriteFile.Path}
		}
		mode := fs.FileMode(0)
		if fi, err := root.Stat(r); err == nil {
			mode = fi.Mode().Perm() // an overwrite keeps the mode
		}
		return sb.box.WriteFile(r, stdin, mode)
	case req.ReadFile != nil:
		r, err := rel(req.ReadFile.Path)
		if err != nil {
			return err
		}
		f, err := root.Open(r)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			return &fsError{"IsDirectory", "Is a directory", req.ReadFile.Path}
		}
		_, err = io.Copy(stdout, f)
		return err
	case req.Stat != nil:
		r, err := rel(req.Stat.Path)
		if err != nil {
			return err
		}
		ent, err := entry(root, r, req.Stat.Path)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(ent)
	case req.ListFiles != nil:
		r, err := rel(req.ListFiles.Path)
		if err != nil {
			return err
		}
		f, err := root.Open(r)
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		sort.Strings(names)
		ents := []FileEntry{}
		for _, n := range names {
			ent, err := entry(root, path.Join(r, n), path.Join(req.ListFiles.Path, n))
			if err == nil {
				ents = append(ents, ent)
			}
		}
		return json.NewEncoder(stdout).Encode(ents)
	case req.MakeDirectory != nil:
		r, err := rel(req.MakeDirectory.Path)
		if err != nil {
			return err
		}
		if req.MakeDirectory.Parents {
			return root.MkdirAll(r, 0o755)
		}
		return root.Mkdir(r, 0o755)
	case req.Remove != nil:
		r, err := rel(req.Remove.Path)
		if err != nil {
			return err
		}
		if req.Remove.Recursive {
			if _, err := root.Lstat(r); err != nil {
				return err
			}
			return root.RemoveAll(r)
		}
		return root.Remove(r)
	}
	return &fsError{"NotSupported", "operation not supported by the fake", args[0]}
}

func entry(root *os.Root, rel, abs string) (FileEntry, error) {
	fi, err := root.Lstat(rel)
	if err != nil {
		return FileEntry{}, err
	}
	ent := FileEntry{Name: fi.Name(), Path: abs, Size: fi.Size(), Mode: uint32(fi.Mode().Perm()),
		Permissions: fi.Mode().Perm().String()[1:], Owner: "root", Group: "root",
		ModifiedTime: float64(fi.ModTime().UnixNano()) / 1e9}
	if rel == "." {
		ent.Name = path.Base(abs)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		ent.Type = "symlink"
		if t, err := root.Readlink(rel); err == nil {
			ent.SymlinkTarget = &t
		}
	case fi.IsDir():
		ent.Type = "directory"
	case fi.Mode().IsRegular():
		ent.Type = "file"
	default:
		ent.Type = "other"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ent.Mode = st.Mode
	}
	return ent, nil
}
