package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// Disk limits. A sandbox's directory sits on the host's disk, where nothing
// bounds what its commands write. A root server gives each sandbox a file
// system of its own, of the configured size: an ext4 image beside the
// directory (sparse: it takes on the host only what is written in it),
// loop-mounted on the directory. Writes past it fail with "no space left"
// inside the sandbox and from write_file alike, and the host keeps its
// space. The mount lives in the host's mount table, so it outlives the
// sandbox's PID 1 and the server; after a reboot the next use mounts the
// image again.
//
// A jail started while a sandbox's file system is mounted holds a copy of
// that mount until it drops the host's tree, so an unused spare PID 1 can
// keep a destroyed sandbox's image (unlinked) in use until it is taken.
//
// Without root (or loop devices, or mkfs.ext4) the directory is not
// bounded; the server says so at start-up.

const diskImage = "disk.img"

// disks makes and mounts the sandboxes' file systems.
type disks struct {
	dir  string // the provider's directory; the template is beside it
	size int64  // bytes per sandbox; 0: no file systems of their own

	mu       sync.Mutex // held while making the template and mounting
	template string     // path of a formatted image of size, once made

	// spare is the next sandbox's file system, made in the background: a
	// mount takes a loaded machine a few hundred milliseconds, which
	// sandbox_create should not wait for.
	spareMu sync.Mutex
	spare   *spareDisk
	filling bool
	closed  bool
}

// spareDisk is a formatted image, mounted nowhere yet: its file system
// hangs on a detached mount, so no mount namespace made meanwhile (a jail's)
// holds a copy of it.
type spareDisk struct {
	img   string
	mount int // a detached mount (fsmount); closing it unmounts
}

func (s *spareDisk) discard() {
	unix.Close(s.mount)
	os.Remove(s.img)
}

// diskSupport says why this machine cannot give sandboxes file systems of
// their own, or nil.
func diskSupport() error {
	if os.Geteuid() != 0 {
		return errors.New("mounting a file system per sandbox needs a root server")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("this machine has no loop devices (%v)", err)
	}
	if _, err := mkfsPath(); err != nil {
		return errors.New("mkfs.ext4 is not installed (Debian: apt-get install e2fsprogs)")
	}
	return nil
}

func mkfsPath() (string, error) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mkfs.ext4 not found")
}

// describe is the limit as sandbox_create reports it.
func (d *disks) describe() string {
	if d.size == 0 {
		return ""
	}
	return units.BytesSize(float64(d.size)) + " on /workspace (a file system of its own); /tmp 1GiB and /dev/shm 256MiB, in memory"
}

// create gives the sandbox directory root, beside which base holds the
// image, a file system of its own. The directory must exist and be empty.
func (d *disks) create(base, root string) error {
	if d.size == 0 {
		return nil
	}
	defer d.startRefill()
	img := filepath.Join(base, diskImage)
	fs := d.take()
	if fs != nil && os.Rename(fs.img, img) != nil {
		fs.discard() // the cache is on another file system: make one here
		fs = nil
	}
	if fs == nil {
		var err error
		if fs, err = d.prepare(img); err != nil {
			return err
		}
	}
	err := unix.MoveMount(fs.mount, "", unix.AT_FDCWD, root, unix.MOVE_MOUNT_F_EMPTY_PATH)
	unix.Close(fs.mount)
	if err != nil {
		return fmt.Errorf("mount the sandbox's file system on %s: %w", root, err)
	}
	// A fresh file system's lost+found is no business of the sandbox's;
	// the directory keeps the mode the sandbox root had.
	os.Remove(filepath.Join(root, "lost+found"))
	return os.Chmod(root, 0o700)
}

// take returns the spare file system, if one is ready.
func (d *disks) take() *spareDisk {
	d.spareMu.Lock()
	defer d.spareMu.Unlock()
	fs := d.spare
	d.spare = nil
	return fs
}

// startRefill has the next spare made in the background, after the
// create that took this one: the two would only slow each other.
func (d *disks) startRefill() {
	d.spareMu.Lock()
	defer d.spareMu.Unlock()
	if d.spare == nil && !d.filling && !d.closed {
		d.filling = true
		go d.refill()
	}
}

func (d *disks) refill() {
	fs, err := d.prepare(filepath.Join(d.cacheDir(), fmt.Sprintf("spare-%d-%d.img", os.Getpid(), time.Now().UnixNano())))
	d.spareMu.Lock()
	defer d.spareMu.Unlock()
	d.filling = false
	if err != nil {
		return // the next create makes its own, and says what failed
	}
	if d.closed || d.spare != nil {
		fs.discard()
		return
	}
	d.spare = fs
}

// close discards the spare file system.
func (d *disks) close() {
	d.spareMu.Lock()
	defer d.spareMu.Unlock()
	d.closed = true
	if d.spare != nil {
		d.spare.discard()
		d.spare = nil
	}
}

// prepare copies the template to img and mounts it nowhere yet.
func (d *disks) prepare(img string) (*spareDisk, error) {
	tmpl, err := d.templateImage()
	if err != nil {
		return nil, err
	}
	if err := copySparse(tmpl, img, d.size); err != nil {
		return nil, fmt.Errorf("disk image: %w", err)
	}
	mount, err := mountDetached(img)
	if err != nil {
		os.Remove(img)
		return nil, err
	}
	return &spareDisk{img: img, mount: mount}, nil
}

func (d *disks) cacheDir() string { return filepath.Join(filepath.Dir(d.dir), "cache") }

// ensure mounts the sandbox's image on its directory when it is not (the
// machine restarted), before anything reads or writes there: files written
// into the bare directory would escape the limit and then hide beneath the
// mount.
func (d *disks) ensure(base, root string) error {
	img := filepath.Join(base, diskImage)
	if _, err := os.Lstat(img); err != nil {
		return nil // a sandbox without a file system of its own
	}
	if mounted(base, root) {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Another server on this state directory may mount it meanwhile: the
	// lock on the image orders the two.
	f, err := os.Open(img)
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	if mounted(base, root) {
		return nil
	}
	mount, err := mountDetached(img)
	if err != nil {
		return err
	}
	defer unix.Close(mount)
	if err := unix.MoveMount(mount, "", unix.AT_FDCWD, root, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount the sandbox's file system on %s: %w", root, err)
	}
	return nil
}

// remove unmounts the sandbox's file system, if it has one; the image goes
// with the directory.
func (d *disks) remove(base, root string) error {
	if _, err := os.Lstat(filepath.Join(base, diskImage)); err != nil {
		return nil
	}
	for mounted(base, root) {
		err := unix.Unmount(root, 0)
		if errors.Is(err, unix.EBUSY) {
			// A process killed just now may still hold a file: detach
			// now, the kernel frees it when the last one closes.
			err = unix.Unmount(root, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", root, err)
		}
		if err != nil {
			break
		}
	}
	return nil
}

// mounted tells whether root is a mount point: it is when it sits on
// another device than the directory holding it.
func mounted(base, root string) bool {
	var b, r unix.Stat_t
	if unix.Lstat(base, &b) != nil || unix.Lstat(root, &r) != nil {
		return false
	}
	return b.Dev != r.Dev
}

// templateImage formats, once per provider, the image every sandbox's is a
// copy of: copying a sparse image is far cheaper than formatting one.
func (d *disks) templateImage() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.template != "" {
		return d.template, nil
	}
	// Beside the sandboxes' directory, not in it: it is no sandbox.
	cache := d.cacheDir()
	path := filepath.Join(cache, "local-disk-"+strconv.FormatInt(d.size, 10)+".ext4")
	removeDeadSpares(cache)
	if _, err := os.Stat(path); err != nil {
		if err := os.MkdirAll(cache, 0o700); err != nil {
			return "", fmt.Errorf("disk template: %w", err)
		}
		mkfs, err := mkfsPath()
		if err != nil {
			return "", err
		}
		tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return "", fmt.Errorf("disk template: %w", err)
		}
		err = f.Truncate(d.size)
		f.Close()
		if err == nil {
			// No reserved blocks (the sandbox has no root to keep them
			// for); lazy initialisation keeps the image sparse.
			var out []byte
			out, err = exec.Command(mkfs, "-q", "-F", "-m", "0",
				"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", tmp).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%s: %v: %s", mkfs, err, out)
			}
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("disk template: %w", err)
		}
	}
	d.template = path
	return path, nil
}

// copySparse copies src to a new file dst of size bytes, writing only the
// parts of src that hold data.
func copySparse(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = func() error {
		if err := out.Truncate(size); err != nil {
			return err
		}
		fd := int(in.Fd())
		for off := int64(0); off < size; {
			data, err := unix.Seek(fd, off, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) {
				return nil // only a hole is left
			}
			if err != nil {
				return err
			}
			hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
			if err != nil {
				return err
			}
			if _, err := out.Seek(data, io.SeekStart); err != nil {
				return err
			}
			if _, err := in.Seek(data, io.SeekStart); err != nil {
				return err
			}
			if _, err := io.CopyN(out, in, hole-data); err != nil {
				return err
			}
			off = hole
		}
		return nil
	}()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// mountDetached attaches img to a loop device (the one already backed by
// it, if any: a second device would give the image two file systems, and
// corrupt it) and makes its file system a mount attached nowhere yet. The
// device clears itself when the last mount of it goes.
func mountDetached(img string) (int, error) {
	if dev := loopOf(img); dev != "" {
		if mount, err := fsMount(dev); err == nil {
			return mount, nil
		}
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return -1, fmt.Errorf("disk image: %w", err)
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return -1, fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()
	for range 100 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return -1, fmt.Errorf("loop devices: no free one: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		loop, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return -1, fmt.Errorf("loop devices: %w", err)
		}
		err = attach(int(loop.Fd()), int(f.Fd()))
		if errors.Is(err, unix.EBUSY) {
			loop.Close() // taken by another process meanwhile
			continue
		}
		if err != nil {
			loop.Close()
			return -1, fmt.Errorf("loop device %s: %w", dev, err)
		}
		mount, err := fsMount(dev)
		loop.Close() // the file system holds the device now; alone, it clears
		return mount, err
	}
	return -1, errors.New("loop devices: every free one was taken by others")
}

// fsMount makes the ext4 file system on dev a detached mount.
func fsMount(dev string) (int, error) {
	fsfd, err := unix.Fsopen("ext4", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("mount the sandbox's file system: %w (a kernel from 5.2 on is needed)", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "source", dev); err != nil {
		return -1, fmt.Errorf("mount the sandbox's file system: %w", err)
	}
	// noinit_itable: the kernel does not zero inode tables behind our
	// back, which would fill the sparse image with zeros.
	if err := unix.FsconfigSetFlag(fsfd, "noinit_itable"); err != nil {
		return -1, fmt.Errorf("mount the sandbox's file system: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("mount the sandbox's file system from %s: %w", dev, err)
	}
	mount, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("mount the sandbox's file system: %w", err)
	}
	return mount, nil
}

// attach binds a loop device to a file, clearing itself on last close.
func attach(loop, file int) error {
	cfg := unix.LoopConfig{Fd: uint32(file), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}}
	err := unix.IoctlLoopConfigure(loop, &cfg)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	// Kernels before 5.8 lack LOOP_CONFIGURE.
	if err := unix.IoctlSetInt(loop, unix.LOOP_SET_FD, file); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(loop, &cfg.Info); err != nil {
		unix.IoctlSetInt(loop, unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}

// loopOf is the loop device backed by img, if any.
func loopOf(img string) string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSuffix(string(b), "\n") == img {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		}
	}
	return ""
}

// removeDeadSpares removes the spare images of servers that are gone (their
// file systems went with them: a detached mount ends with its process).
func removeDeadSpares(cache string) {
	spares, _ := filepath.Glob(filepath.Join(cache, "spare-*.img"))
	for _, img := range spares {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(img), "spare-"), "-")
		if n, err := strconv.Atoi(pid); err == nil && unix.Kill(n, 0) == unix.ESRCH {
			os.Remove(img)
		}
	}
}
