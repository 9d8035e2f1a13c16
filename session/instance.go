package session

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// A server process tells whether another one on this machine still runs by
// a lock: each holds an exclusive flock on <InstanceDir>/<instance>.lock for
// as long as it lives, and the kernel drops it however the process ends
// (SIGKILL included). A lock file that can be locked belongs to a dead
// server; no file means a server this machine cannot see (another host, or
// another state dir).

// lockInstance creates and locks this process's instance file.
func lockInstance(dir, instance string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the instance directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(instancePath(dir, instance), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot create this server's instance lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("cannot lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// unlockInstance removes the lock file and releases the lock, at a clean
// exit: this server's remaining sandboxes (kept ones, failed destroys) then
// read as unknown, and go by their expiry.
func unlockInstance(f *os.File) {
	os.Remove(f.Name())
	f.Close()
}

// staleInstanceAge is how long the lock file of a dead server is kept: long
// enough for any server's reaper to have reclaimed what it left (they run
// every few minutes), after which the file is only clutter.
const staleInstanceAge = 7 * 24 * time.Hour

// pruneInstances removes the lock files of servers dead for long.
func pruneInstances(dir string, now time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		instance, ok := strings.CutSuffix(e.Name(), ".lock")
		fi, err := e.Info()
		if !ok || err != nil || now.Sub(fi.ModTime()) < staleInstanceAge {
			continue
		}
		if instanceLiveness(dir, instance) == providers.OwnerDead {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func instancePath(dir, instance string) string {
	return filepath.Join(dir, instance+".lock")
}

// instanceLiveness tells whether the server process instance still runs.
func instanceLiveness(dir, instance string) providers.Liveness {
	// Labels are data: only a well-formed instance ID names a file.
	if dir == "" || uuid.Validate(instance) != nil || len(instance) != 36 {
		return providers.OwnerUnknown
	}
	f, err := os.Open(instancePath(dir, instance))
	if err != nil {
		return providers.OwnerUnknown
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	switch {
	case err == nil:
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return providers.OwnerDead
	case errors.Is(err, syscall.EWOULDBLOCK):
		return providers.OwnerLive
	}
	return providers.OwnerUnknown
}
