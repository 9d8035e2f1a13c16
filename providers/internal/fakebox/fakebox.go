// Package fakebox is the core every vendor fake shares: sandboxes that are
// temporary directories where commands really run (streamed output, stdin,
// exit status, signals to the whole tree), files confined to the sandbox,
// and faults injected on demand. A vendor fake (e2bfake, daytonafake, ...)
// is then only the vendor's wire protocol in front of it.
//
// Commands run on this machine as the test's user, unisolated: a fake must
// only ever run trusted test code.
package fakebox

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Boxes holds the fake sandboxes under one base directory.
type Boxes struct {
	base    string
	ownBase bool

	mu    sync.Mutex
	boxes map[string]*Box
}

// New keeps sandboxes under baseDir; "" means a new temp dir that Close
// removes.
func New(baseDir string) (*Boxes, error) {
	bs := &Boxes{base: baseDir, boxes: map[string]*Box{}}
	if baseDir == "" {
		dir, err := os.MkdirTemp("", "fakebox-")
		if err != nil {
			return nil, err
		}
		bs.base, bs.ownBase = dir, true
	}
	return bs, nil
}

// Create makes a sandbox with a random ID.
func (bs *Boxes) Create(env map[string]string) (*Box, error) {
	return bs.CreateID(RandomID(20), env)
}

// CreateID makes a sandbox with the given ID (a vendor's ID format).
func (bs *Boxes) CreateID(id string, env map[string]string) (*Box, error) {
	if id == "" || strings.ContainsAny(id, "/\\\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("fakebox: invalid sandbox ID %q", id)
	}
	home := filepath.Join(bs.base, id)
	if err := os.Mkdir(home, 0o755); err != nil {
		return nil, err
	}
	// Sandboxes share this machine's /tmp: each gets its own TMPDIR, as
	// a VM or container has its own /tmp.
	tmp := filepath.Join(bs.base, ".tmp", id)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		os.Remove(home)
		return nil, err
	}
	// Commands and paths see the directory by its real name, so that
	// `pwd` and the paths the fake reports agree.
	if real, err := filepath.EvalSymlinks(home); err == nil {
		home = real
	}
	if real, err := filepath.EvalSymlinks(tmp); err == nil {
		tmp = real
	}
	b := &Box{ID: id, Home: home, Tmp: tmp, Env: cloneMap(env), Created: time.Now(), procs: map[int]*Proc{}}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.boxes[id] = b
	return b, nil
}

// Get returns the sandbox, or nil.
func (bs *Boxes) Get(id string) *Box {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.boxes[id]
}

// List returns the sandboxes, oldest first.
func (bs *Boxes) List() []*Box {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := make([]*Box, 0, len(bs.boxes))
	for _, b := range bs.boxes {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Remove kills everything running in the sandbox and deletes its
// directory; it reports whether the sandbox existed.
func (bs *Boxes) Remove(id string) bool {
	bs.mu.Lock()
	b := bs.boxes[id]
	delete(bs.boxes, id)
	bs.mu.Unlock()
	if b == nil {
		return false
	}
	b.Kill()
	removeAll(b.Home)
	removeAll(b.Tmp)
	return true
}

// Close removes every sandbox (and the base directory when New made it).
func (bs *Boxes) Close() error {
	for _, b := range bs.List() {
		bs.Remove(b.ID)
	}
	if bs.ownBase {
		removeAll(bs.base)
	}
	return nil
}

// Box is one fake sandbox. Home is its directory: the default working
// directory, what relative paths resolve against, and the only place file
// operations may reach.
type Box struct {
	ID   string
	Home string
	// Tmp is the sandbox's TMPDIR.
	Tmp     string
	Env     map[string]string
	Created time.Time

	mu     sync.Mutex
	procs  map[int]*Proc
	killed bool
}

// Resolve maps a sandbox path (absolute, or relative to Home) to a path
// relative to Home, refusing any that leaves it.
func (b *Box) Resolve(p string) (rel, abs string, err error) {
	if p == "" {
		p = "."
	}
	if !path.IsAbs(p) {
		p = path.Join(b.Home, p)
	}
	p = path.Clean(p)
	if p == b.Home {
		return ".", p, nil
	}
	r, ok := strings.CutPrefix(p, b.Home+"/")
	if !ok {
		return "", "", fmt.Errorf("path %q is outside this fake sandbox's directory %s", p, b.Home)
	}
	return r, p, nil
}

// Root opens the sandbox's directory as an os.Root, which no path, `..` or
// symlink can leave.
func (b *Box) Root() (*os.Root, error) { return os.OpenRoot(b.Home) }

// WriteFile replaces the file at rel (relative to Home) with everything
// body yields, through a temporary file renamed into place, so a body that
// fails half way leaves the old file. Missing parents are created.
func (b *Box) WriteFile(rel string, body io.Reader, mode fs.FileMode) error {
	return writeFile(b.Home, rel, body, mode)
}

// TmpRel maps a path in the sandbox's TMPDIR (Tmp, by its absolute name,
// as commands see it) to one relative to Tmp: a sandbox's temporary
// directory is its own, as a VM's or container's /tmp is, and a vendor's
// file API reaches it.
func (b *Box) TmpRel(p string) (string, bool) {
	p = path.Clean(p)
	if p == b.Tmp {
		return ".", true
	}
	return strings.CutPrefix(p, b.Tmp+"/")
}

// TmpRoot opens the sandbox's TMPDIR (see TmpRel).
func (b *Box) TmpRoot() (*os.Root, error) { return os.OpenRoot(b.Tmp) }

// WriteTmpFile is WriteFile for a path relative to Tmp.
func (b *Box) WriteTmpFile(rel string, body io.Reader, mode fs.FileMode) error {
	return writeFile(b.Tmp, rel, body, mode)
}

func writeFile(dir, rel string, body io.Reader, mode fs.FileMode) error {
	root, err := os.OpenRoot(dir)
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
	if mode == 0 {
		mode = 0o644
	}
	tmp := rel + ".fakebox-" + RandomID(8)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		root.Remove(tmp)
	}
	return err
}

// RandomID returns n characters of [a-z0-9].
func RandomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// removeAll removes dir even when a command left read-only directories.
func removeAll(dir string) {
	if os.RemoveAll(dir) == nil {
		return
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}
