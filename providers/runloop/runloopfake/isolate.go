package runloopfake

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// A real devbox is its own machine; the fake's commands run on this one.
// Where the kernel allows it (root, or unprivileged user namespaces), each
// command gets a mount namespace in which /tmp (and $TMPDIR) is the
// devbox's own directory, so commands neither see nor touch this machine's
// temporary files, where tests keep theirs. The rest of the file system is
// shared: the fake is no sandbox.
const isolateScript = `mount --make-rprivate / 2>/dev/null
for t in /tmp "$2"; do [ -d "$t" ] && { mount --bind "$1" "$t" || exit 125; }; done
shift 2
cd "$HOME" && exec /bin/sh -c "$1"`

// hiddenTmp is this machine's temporary directory besides /tmp.
func hiddenTmp() string { return filepath.Clean(os.TempDir()) }

// isolationBase picks a base directory outside the directories hidden from
// commands, and reports whether commands can be isolated at all.
func isolationBase() (string, bool) {
	base, err := os.MkdirTemp("/var/tmp", "runloopfake-")
	if err != nil {
		return "", false
	}
	for _, h := range []string{"/tmp", hiddenTmp()} {
		if base == h || strings.HasPrefix(base, h+"/") {
			os.RemoveAll(base)
			return "", false
		}
	}
	// A file in this machine's temp dir must be out of a command's sight.
	marker, err := os.CreateTemp("", "runloopfake-probe-")
	if err != nil {
		os.RemoveAll(base)
		return "", false
	}
	marker.Close()
	defer os.Remove(marker.Name())
	cmd := isolated(base, base, "test ! -e "+shellQuote(marker.Name()))
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + base}
	if err := cmd.Run(); err != nil {
		os.RemoveAll(base)
		return "", false
	}
	return base, true
}

// isolated is command run with tmp mounted over /tmp in a new mount
// namespace (and a user namespace when not root).
func isolated(home, tmp, command string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-c", isolateScript, "runloopfake", tmp, hiddenTmp(), command)
	cmd.Dir = home
	attr := &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWNS}
	if uid, gid := os.Geteuid(), os.Getegid(); uid != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
	}
	cmd.SysProcAttr = attr
	return cmd
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
