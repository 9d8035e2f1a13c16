package modalfake

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// sandbox is one fake sandbox: a directory and the commands run in it.
type sandbox struct {
	s                          *Server
	id, taskID, appID, imageID string
	dir                        string
	env                        map[string]string
	tags                       []*pb.SandboxTag
	created                    time.Time
	timeout                    time.Duration
	wantWorkdir                string
	routerJWT                  string
	timer                      *time.Timer
	done                       chan struct{} // closed when the sandbox finishes

	mu    sync.Mutex
	res   *pb.GenericResult
	execs map[string]*execution
}

func (sb *sandbox) result() *pb.GenericResult {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.res
}

func (sb *sandbox) tagMap() map[string]string {
	m := make(map[string]string, len(sb.tags))
	for _, t := range sb.tags {
		m[t.GetTagName()] = t.GetTagValue()
	}
	return m
}

// finish ends the sandbox once: every command it ran is killed and its
// directory removed. The record stays, so waits and polls see the result.
func (sb *sandbox) finish(st pb.GenericResult_GenericStatus, msg string) {
	sb.mu.Lock()
	if sb.res != nil {
		sb.mu.Unlock()
		return
	}
	sb.res = &pb.GenericResult{Status: st, Exception: msg}
	sb.timer.Stop()
	execs := make([]*execution, 0, len(sb.execs))
	for _, e := range sb.execs {
		execs = append(execs, e)
	}
	sb.mu.Unlock()
	close(sb.done)
	for _, e := range execs {
		e.kill()
	}
	killMarked(sb.id)
	removeAll(sb.dir)
}

// markerVar tags every process a sandbox starts, so finishing the sandbox
// finds the ones that left their process group.
const markerVar = "MODALFAKE_SANDBOX_ID"

// killMarked kills every process carrying the sandbox's marker. Linux only:
// elsewhere there is no /proc to scan.
func killMarked(id string) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	want := []byte(markerVar + "=" + id + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
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
