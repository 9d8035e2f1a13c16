package jail

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// landlockABI is the kernel's Landlock ABI version, 0 when it has none.
func landlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}

// confineThread puts the calling OS thread (locked by the caller) under
// Landlock: files limited to the sandbox (read-write) and read-only system
// paths, signals and abstract Unix sockets scoped to the sandbox, and
// ptrace of anything outside refused. Every command inherits it. It returns
// the ABI in force (0: the kernel has no Landlock).
func confineThread(inNamespaces bool, dir string) (int, error) {
	abi := landlockABI()
	if abi == 0 {
		return 0, nil
	}
	rw := []string{Workspace, "/tmp", "/dev/shm", "/dev/pts"}
	ro := []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc"}
	var roFiles []string // on the host, where /etc is not ours to trim
	if !inNamespaces {
		// The host's tree: only the harmless files of /etc, and the
		// sandbox directory where it is.
		rw = []string{dir}
		ro = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/proc"}
		for _, n := range etcAllowed {
			p := filepath.Join("/etc", n)
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				ro = append(ro, p)
			} else if err == nil {
				roFiles = append(roFiles, p)
			}
		}
	}
	devs := make([]string, len(devNodes))
	for i, n := range devNodes {
		devs[i] = "/dev/" + n
	}
	// Network access is left to the network namespace: a sandbox with
	// networking on may use any port.
	cfg := landlock.Config{HandledAccessFS: landlock.V7.HandledAccessFS, Scoped: landlock.V7.Scoped}.BestEffort()
	rules := []landlock.Rule{
		landlock.RWDirs(rw...).WithRefer().WithIoctlDev().IgnoreIfMissing(),
		landlock.RODirs(ro...).IgnoreIfMissing(),
		landlock.RWFiles(devs...).WithIoctlDev().IgnoreIfMissing(),
		landlock.PathAccess(ll.AccessFSReadDir, "/", "/dev"),
	}
	if len(roFiles) > 0 {
		rules = append(rules, landlock.ROFiles(roFiles...).IgnoreIfMissing())
	}
	fd, flags, err := cfg.NewRulesetFD(rules...)
	if err != nil || fd < 0 {
		return 0, err
	}
	defer unix.Close(fd)
	// Both are per thread: the locked spawner thread and what it forks.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("no_new_privs: %w", err)
	}
	if err := ll.LandlockRestrictSelf(fd, flags); err != nil {
		return 0, err
	}
	return abi, nil
}

// droppedCapabilities are what root inside a jail never needs and could
// only use against the jail itself (its mounts, PID 1's memory).
var droppedCapabilities = []uintptr{
	unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE, unix.CAP_SYS_MODULE, unix.CAP_SYS_RAWIO,
	unix.CAP_SYS_BOOT, unix.CAP_SYS_TIME, unix.CAP_MKNOD, unix.CAP_SYSLOG,
	unix.CAP_MAC_ADMIN, unix.CAP_MAC_OVERRIDE, unix.CAP_BPF, unix.CAP_PERFMON,
	unix.CAP_CHECKPOINT_RESTORE, unix.CAP_SETPCAP,
}

// dropCapabilities removes them from the calling thread's bounding set, so
// that no command started from it ever has them.
func dropCapabilities() error {
	for _, c := range droppedCapabilities {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("dropping capability %d: %w", c, err)
		}
	}
	return nil
}

// userNamespacesWork says whether this process may create a user
// namespace (some distributions and containers forbid it) by trying.
func userNamespacesWork() bool {
	userNSOnce.Do(func() { userNSOK = tryUserNamespace() })
	return userNSOK
}

var (
	userNSOnce sync.Once
	userNSOK   bool
)

func tryUserNamespace() bool {
	attr := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		// Unprivileged users may only map a gid with setgroups denied.
		GidMappingsEnableSetgroups: false,
	}
	var pid int
	var err error
	whileDumpable(func() { pid, err = syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Sys: attr}) })
	if err != nil {
		return false
	}
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
	return ws.Exited() && ws.ExitStatus() == 0
}

// uidBase is the first host uid a root server gives its sandboxes.
const uidBase = 100000

// allocateUID picks a host uid no other live jail uses, for a root server:
// the sandbox's root is that unprivileged uid on the host. The returned
// file holds an exclusive lock on the choice; PID 1 inherits it, so the uid
// is free again when the jail ends.
func allocateUID() (*os.File, int, error) {
	dir := "/run/mcp-sandbox/uids"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("jail: uid locks: %w", err)
	}
	for n := range 60000 {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(n)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, 0, fmt.Errorf("jail: uid locks: %w", err)
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			return f, uidBase + n, nil
		}
		f.Close()
	}
	return nil, 0, fmt.Errorf("jail: every sandbox uid from %d is in use", uidBase)
}

// chownTree gives the sandbox directory to the sandbox's host uid.
func chownTree(dir string, uid int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}
