package runloopfake

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// A real devbox is its own machine; the fake's commands run on this one.
// Where the kernel allows it (root, or unprivileged user namespaces), each
// command gets a mount namespace in which /tmp (and $TMPDIR) is the
// devbox's own directory, so commands neither see nor touch this machine's
// temporary files, where tests keep theirs. The rest of the file system is
// shared: the fake is no sandbox.
const isolateScript = `for t in /tmp "$2"; do [ -d "$t" ] && { mount --bind "$1" "$t" || exit 125; }; done
shift 2
cd "$HOME" && exec /bin/sh -c "$1"`

// hiddenTmp is this machine's temporary directory besides /tmp.
func hiddenTmp() string { return filepath.Clean(os.TempDir()) }

// holdScript keeps a devbox's mount namespace, with its /tmp mounted, for
// the commands that join it (nsenter), so that a command costs no mount.
const holdScript = `for t in /tmp "$2"; do [ -d "$t" ] && { mount --bind "$1" "$t" || exit 125; }; done
echo ready
exec sleep 2147483647`

// nsenter is util-linux's nsenter, used as root to join a devbox's mount
// namespace.
var nsenter, _ = exec.LookPath("nsenter")

// unshare is util-linux's unshare, which gives a command its own mount
// namespace (private propagation) and, when not root, a user namespace
// mapping this user to root so that it may mount there.
var unshare, _ = exec.LookPath("unshare")

// isolationBase picks a base directory outside the directories hidden from
// commands, and reports whether commands can be isolated at all.
func isolationBase() (string, bool) {
	if unshare == "" {
		return "", false
	}
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
	argv := isolated(base, "test ! -e "+shellQuote(marker.Name()))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + base}
	if err := cmd.Run(); err != nil {
		os.RemoveAll(base)
		return "", false
	}
	return base, true
}

// holder is the argv of a devbox's namespace holder, when commands can
// join it (root, with nsenter).
func holder(tmp string) []string {
	if os.Geteuid() != 0 || nsenter == "" {
		return nil
	}
	return []string{unshare, "--mount", "/bin/sh", "-c", holdScript, "runloopfake", tmp, hiddenTmp()}
}

// joined is the argv that runs command in the holder's mount namespace,
// from home (joining a mount namespace moves to its root otherwise).
func joined(pid int, home, command string) []string {
	return []string{nsenter, "--target", strconv.Itoa(pid), "--mount", "--wd=" + home, "--", "/bin/sh", "-c", command}
}

// isolated is the argv that runs command with tmp mounted over /tmp (and
// $TMPDIR) in a mount namespace of its own.
func isolated(tmp, command string) []string {
	argv := []string{unshare, "--mount"}
	if os.Geteuid() != 0 {
		argv = append(argv, "--map-root-user")
	}
	return append(argv, "/bin/sh", "-c", isolateScript, "runloopfake", tmp, hiddenTmp(), command)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
