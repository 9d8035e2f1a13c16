package jail

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Each command runs under a reaper (internal/reaper), a child subreaper:
// whatever the command starts stays below it while the command runs, so
// PID 1 can end the whole tree, and what it leaves in the background when
// it exits goes on, as on any machine. PID 1 runs reapers from a sealed
// in-memory copy, which nothing in the sandbox can change, and keeps one
// ready for the next command (reapers.go).
//
//go:generate go run github.com/mcp-sandbox/mcp-sandbox/providers/internal/genstatic -pkg ./internal/reaper -o reaperbin
//go:embed reaperbin/linux-amd64.gz reaperbin/linux-arm64.gz
var reaperFS embed.FS

// reaperName is the reaper's argv[0], as ps shows it.
const reaperName = "mcp-sandbox-reaper"

// sharedReaper is the sealed in-memory copy of the reaper, made once by
// the server and handed to every jail's PID 1 (sealed, no jail can change
// it); the null device where there is none for this architecture, so that
// each command gets a pid namespace of its own instead.
var sharedReaper = sync.OnceValues(func() (*os.File, error) {
	z, err := reaperFS.ReadFile("reaperbin/linux-" + runtime.GOARCH + ".gz")
	if err != nil {
		return os.Open(os.DevNull)
	}
	r, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("jail: reaper: %w", err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("jail: reaper: %w", err)
	}
	fd, err := unix.MemfdCreate(reaperName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return os.Open(os.DevNull) // no memfd: do without
	}
	f := os.NewFile(uintptr(fd), reaperName)
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return nil, fmt.Errorf("jail: reaper: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("jail: reaper: sealing: %w", err)
	}
	return f, nil
})

// inheritedReaper is PID 1's copy of the reaper, when what it inherited
// is one: sealed against writes, so that what runs is what the server made.
func inheritedReaper() *os.File {
	seals, err := unix.FcntlInt(fdReaper, unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_WRITE == 0 {
		unix.Close(fdReaper)
		return nil
	}
	return os.NewFile(fdReaper, reaperName)
}

// killTree ends a command started under the reaper with everything below
// it: it stops the reaper and every descendant found, looks again until
// nothing new turns up (a stopped process cannot fork), then kills them all.
func killTree(root int) {
	seen := map[int]bool{root: true}
	syscall.Kill(root, syscall.SIGSTOP)
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, k := range childrenOf(pid) {
			if !seen[k] {
				seen[k] = true
				syscall.Kill(k, syscall.SIGSTOP)
				todo = append(todo, k)
			}
		}
		if len(todo) == 0 {
			// One more pass over everyone: a child forked just before its
			// parent stopped is in the list only now.
			for p := range seen {
				for _, k := range childrenOf(p) {
					if !seen[k] {
						seen[k] = true
						syscall.Kill(k, syscall.SIGSTOP)
						todo = append(todo, k)
					}
				}
			}
		}
	}
	for p := range seen {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

// childrenOf lists a process's children from its threads' children files.
func childrenOf(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + "/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				out = append(out, k)
			}
		}
	}
	return out
}
