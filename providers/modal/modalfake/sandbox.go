package modalfake

import (
	"sync"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
	pb "github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb"
)

// sandbox is one fake sandbox: Modal's view of it (task, tags, result)
// around a fakebox.Box, where its commands run.
type sandbox struct {
	s                          *Server
	box                        *fakebox.Box
	id, taskID, appID, imageID string
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
	sb.mu.Unlock()
	close(sb.done)
	sb.s.boxes.Remove(sb.box.ID)
}
