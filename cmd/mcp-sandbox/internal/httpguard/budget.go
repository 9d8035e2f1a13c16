package httpguard

import (
	"context"
	"sync"
	"time"
)

// DefaultBodyBudgetWait is how long a request waits for room in the body
// budget before it gets 503 with Retry-After.
const DefaultBodyBudgetWait = 30 * time.Second

// bodyBudget bounds the bytes of request bodies held by requests in
// flight. Memory for a request is a small multiple of its body (decoding
// copies it), so this bounds the server's memory under many large calls.
type bodyBudget struct {
	size int64

	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed and replaced on every release
}

func newBodyBudget(size int64) *bodyBudget {
	return &bodyBudget{size: size, changed: make(chan struct{})}
}

// acquire takes n bytes of the budget, waiting until there is room, ctx
// ends or wait passes. n must not exceed the budget's size.
func (b *bodyBudget) acquire(ctx context.Context, n int64, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.used+n <= b.size {
			b.used += n
			b.mu.Unlock()
			return true
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false
		}
	}
}

func (b *bodyBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
}

// InFlight returns the body bytes held by requests in flight.
func (b *bodyBudget) inFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
