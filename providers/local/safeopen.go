package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Sandboxed code can replace any file under a sandbox, the server's own
// records included, with a FIFO (open(2) blocks until a writer comes), a
// socket, a device or a symlink. The server opens such paths only through
// these helpers: without following a final symlink, without blocking, and
// only when what it opened is a regular file.

// errNotRegular says what a path was found to be instead of a file.
type errNotRegular struct{ kind string }

func (e *errNotRegular) Error() string { return "is " + e.kind + ", not a regular file" }

// kindOf names a file mode for an error message.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// openRegular opens a file by host path with flag, as a regular file only.
func openRegular(name string, flag int) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		// A symlink (ELOOP) or a socket (ENXIO) fails to open: say which.
		if fi, lerr := os.Lstat(name); lerr == nil && !fi.Mode().IsRegular() &&
			(errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENXIO)) {
			return nil, &errNotRegular{kindOf(fi.Mode())}
		}
		return nil, err
	}
	return regularOnly(f)
}

// openRootRegular is openRegular inside an os.Root (which refuses paths and
// symlinks that leave it).
func openRootRegular(r *os.Root, rel string, flag int) (*os.File, error) {
	f, err := r.OpenFile(rel, flag|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		if fi, serr := r.Stat(rel); serr == nil && !fi.Mode().IsRegular() && errors.Is(err, syscall.ENXIO) {
			return nil, &errNotRegular{kindOf(fi.Mode())}
		}
		return nil, err
	}
	return regularOnly(f)
}

// regularOnly checks what was opened and makes reads block again, as
// regular-file reads do.
func regularOnly(f *os.File) (*os.File, error) {
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &errNotRegular{kindOf(fi.Mode())}
	}
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), false) })
	}
	return f, nil
}

// openDir opens a directory to lock it; anything else is refused without
// blocking.
func openDir(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
}

// Record size caps: a record the server wrote is far smaller, so a larger
// one was planted and is refused before it is read into memory.
const (
	maxSmallRecord = 64 << 10  // state.json, exit.json, next
	maxMetaRecord  = 4 << 20   // meta.json: env and labels
	maxSpecRecord  = 256 << 20 // spec.json: the command's stdin is in it
)

// readRecord reads a whole record file of at most limit bytes.
func readRecord(name string, limit int64) ([]byte, error) {
	f, err := openRegular(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s: over %d bytes", filepath.Base(name), limit)
	}
	return b, err
}

func readJSON(name string, v any) error {
	limit := int64(maxSmallRecord)
	if filepath.Base(name) == "spec.json" {
		limit = maxSpecRecord
	}
	b, err := readRecord(name, limit)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeAtomic(name, b)
}

// writeAtomic replaces name with data: written to a new file beside it (a
// name no one could have planted anything at), then renamed over it.
func writeAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), name)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// writeNew creates name, which must not exist yet, with data.
func writeNew(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// touch makes sure name exists, without blocking on whatever is there.
func touch(name string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// lockWait bounds the wait for a lock: sandboxed code can take the locks
// the server uses (flock needs only an open file) and hold them forever.
const lockWait = 10 * time.Second

// flockWithin takes a lock (syscall.LOCK_SH or LOCK_EX) on f, giving up
// after d.
func flockWithin(f *os.File, how int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s stayed locked for %v by another process", f.Name(), d)
		}
		time.Sleep(pause)
	}
}

// readDir lists a directory without blocking on a FIFO put in its place.
// Unlike os.ReadDir, it does not sort.
func readDir(name string) ([]os.DirEntry, error) {
	f, err := openDir(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}
