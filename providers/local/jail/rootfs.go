package jail

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// systemDirs are bound read-only (or recreated as the symlinks they are on
// merged-/usr systems).
var systemDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// etcAllowed are the parts of /etc a program needs and nothing else: never
// shadow, gshadow, sudoers, ssh or the like.
var etcAllowed = []string{
	"passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf",
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates",
	"ca-certificates.conf", "alternatives", "localtime", "timezone",
	"os-release", "debian_version", "mime.types", "protocols", "services",
	"inputrc", "profile", "bash.bashrc", "environment", "login.defs",
}

// devNodes are bound from the host's /dev.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// Sizes of the in-memory file systems a sandbox may write.
const (
	tmpSize = "1g"
	shmSize = "256m"
)

// rootMount is where the new root is assembled before pivot_root: a
// directory no sandbox directory can live under.
const rootMount = "/sys"

// prepareRoot assembles everything of the new root that does not depend on
// the sandbox: a tmpfs with the system directories, /etc, /proc, /dev and
// /tmp. A spare PID 1 does it while it waits, so Start does not pay for it.
func prepareRoot() (string, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("making mounts private: %w", err)
	}
	root := rootMount
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return "", fmt.Errorf("mounting the new root: %w", err)
	}
	in := func(p string) string { return filepath.Join(root, p) }

	for _, d := range systemDirs {
		src := "/" + d
		fi, err := os.Lstat(src)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(src)
			if err != nil {
				return "", err
			}
			if err := os.Symlink(target, in(d)); err != nil {
				return "", err
			}
			continue
		}
		if err := bindReadOnly(src, in(d), true); err != nil {
			return "", err
		}
	}
	if err := os.Mkdir(in("etc"), 0o755); err != nil {
		return "", err
	}
	for _, name := range etcAllowed {
		src := filepath.Join("/etc", name)
		fi, err := os.Stat(src) // follows symlinks: os-release, resolv.conf
		if err != nil {
			continue
		}
		if err := bindReadOnly(src, in("etc/"+name), fi.IsDir()); err != nil {
			return "", err
		}
	}

	if err := os.Mkdir(in("proc"), 0o555); err != nil {
		return "", err
	}
	if err := unix.Mount("proc", in("proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", fmt.Errorf("mounting /proc: %w", err)
	}
	if err := buildDev(in("dev")); err != nil {
		return "", err
	}
	if err := os.Mkdir(in("tmp"), 0o1777); err != nil {
		return "", err
	}
	// In memory, and so bounded: a sandbox filling /tmp must not fill the
	// machine's memory (where no memory cgroup would stop it).
	if err := unix.Mount("tmpfs", in("tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size="+tmpSize); err != nil {
		return "", fmt.Errorf("mounting /tmp: %w", err)
	}

	return root, nil
}

// finishRoot puts the sandbox directory (tree, a detached copy of its
// mount, or else its path) at /workspace in the prepared root, makes that
// the process's root and drops every other view of the host.
func finishRoot(root, dir string, tree int) error {
	ws := filepath.Join(root, Workspace)
	if err := os.Mkdir(ws, 0o755); err != nil {
		return err
	}
	if tree >= 0 {
		if err := unix.MoveMount(tree, "", unix.AT_FDCWD, ws, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mounting the sandbox directory: %w", err)
		}
	} else if err := bind(dir, ws, true); err != nil {
		return fmt.Errorf("binding the sandbox directory: %w", err)
	}
	if err := remount(ws, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}

	// Swap roots and let the old one go: nothing of the host stays
	// reachable but what was bound.
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("making the root read-only: %w", err)
	}
	return nil
}

// buildDev makes a minimal /dev: a few harmless nodes, a private devpts and
// shm.
func buildDev(dev string) error {
	if err := os.Mkdir(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	for _, n := range devNodes {
		if _, err := os.Stat("/dev/" + n); err != nil {
			continue
		}
		if err := bind("/dev/"+n, filepath.Join(dev, n), false); err != nil {
			return fmt.Errorf("binding /dev/%s: %w", n, err)
		}
	}
	for link, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		if err := os.Symlink(target, filepath.Join(dev, link)); err != nil {
			return err
		}
	}
	// Terminals and POSIX shared memory are nice to have, not required.
	if os.Mkdir(filepath.Join(dev, "pts"), 0o755) == nil {
		unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
	}
	if os.Mkdir(filepath.Join(dev, "shm"), 0o1777) == nil {
		unix.Mount("tmpfs", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size="+shmSize)
	}
	return nil
}

// bind mounts src at dst, creating dst as a directory or an empty file.
func bind(src, dst string, isDir bool) error {
	if isDir {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else {
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	return unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, "")
}

func bindReadOnly(src, dst string, isDir bool) error {
	if err := bind(src, dst, isDir); err != nil {
		return fmt.Errorf("binding %s: %w", src, err)
	}
	return remount(dst, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV)
}

// remount adds flags to a bind mount, keeping the ones the source has: in
// a user namespace the kernel refuses to clear flags a more privileged
// mount set (nodev, noexec, ...).
func remount(dst string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return err
	}
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|flags, ""); err != nil {
		return fmt.Errorf("remounting %s: %w", dst, err)
	}
	return nil
}

// loopbackUp brings lo up, as it is not in a fresh network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return err
	}
	return nil
}
