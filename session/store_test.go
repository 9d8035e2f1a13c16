package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/session"
	"github.com/mcp-sandbox/mcp-sandbox/session/redistest"
)

// stores returns one store of each kind with the given idle TTL.
func stores(t *testing.T, ttl time.Duration) map[string]session.Store {
	t.Helper()
	r := redistest.Start(t)
	rs, err := session.NewRedisStore(context.Background(), r.URL, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return map[string]session.Store{"memory": session.NewMemoryStore(ttl), "redis": rs}
}

func put(t *testing.T, s session.Store, id string, rec session.Record) {
	t.Helper()
	ctx := context.Background()
	l, err := s.Lock(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if err := l.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
}

func TestStoreRecordsAndEnd(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t, 0) {
		t.Run(name, func(t *testing.T) {
			if rec, err := s.Get(ctx, "new"); err != nil || rec.Current != "" || rec.Ended {
				t.Fatalf("unknown session: %+v, %v", rec, err)
			}
			want := session.Record{Owner: "a@x", Current: "sb2", Sandboxes: []session.Handle{{Provider: "local", ID: "sb1"}, {Provider: "docker", ID: "sb2"}}}
			put(t, s, "a", want)
			got, err := s.Get(ctx, "a")
			if err != nil || got.Owner != want.Owner || got.Current != want.Current || len(got.Sandboxes) != 2 || got.Sandboxes[1] != want.Sandboxes[1] {
				t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
			}
			if live, err := s.Live(ctx, "a"); !live || err != nil {
				t.Fatalf("Live = %v, %v", live, err)
			}
			ended, won, err := s.End(ctx, "a")
			if err != nil || !won || len(ended.Sandboxes) != 2 {
				t.Fatalf("first End = %+v, %v, %v; want the record and the win", ended, won, err)
			}
			if _, won, err := s.End(ctx, "a"); won || err != nil {
				t.Fatalf("second End won=%v err=%v; only the first may destroy", won, err)
			}
			if live, _ := s.Live(ctx, "a"); live {
				t.Fatal("an ended session is live")
			}
			if rec, _ := s.Get(ctx, "a"); !rec.Ended || len(rec.Sandboxes) != 0 {
				t.Fatalf("ended record reads %+v", rec)
			}
			l, err := s.Lock(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			if err := l.Put(ctx, want); !errors.Is(err, session.ErrEnded) {
				t.Fatalf("Put after End: %v, want ErrEnded (a call racing the end must not revive it)", err)
			}
		})
	}
}

func TestStoreLeaseExcludes(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t, 0) {
		t.Run(name, func(t *testing.T) {
			held, err := s.Lock(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			if _, err := s.Lock(wctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second Lock while held: %v, want to wait until its context ends", err)
			}
			if l, err := s.Lock(ctx, "b"); err != nil {
				t.Fatalf("another session's lease: %v", err)
			} else {
				l.Release()
			}
			got := make(chan error, 1)
			go func() {
				l, err := s.Lock(ctx, "a")
				if err == nil {
					l.Release()
				}
				got <- err
			}()
			time.Sleep(50 * time.Millisecond)
			held.Release()
			held.Release() // twice is harmless
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a released lease was not handed on")
			}
		})
	}
}

func TestStoreIdleExpiry(t *testing.T) {
	ctx := context.Background()
	ttl := 400 * time.Millisecond
	for name, s := range stores(t, ttl) {
		t.Run(name, func(t *testing.T) {
			put(t, s, "used", session.Record{Current: "x"})
			put(t, s, "idle", session.Record{Current: "y"})
			for i := 0; i < 4; i++ {
				time.Sleep(ttl / 4)
				if rec, err := s.Get(ctx, "used"); err != nil || rec.Current != "x" {
					t.Fatalf("a session in use expired: %+v, %v", rec, err)
				}
			}
			time.Sleep(ttl / 4)
			if live, _ := s.Live(ctx, "idle"); live {
				t.Fatal("an idle session outlived its TTL")
			}
			if live, _ := s.Live(ctx, "used"); !live {
				t.Fatal("a session used within its TTL expired")
			}
		})
	}
}

// A client's live sessions are counted, ended ones not, and the one it
// used least lately is offered for eviction once idle long enough.
func TestStoreClientSessions(t *testing.T) {
	ctx := context.Background()
	ttl := time.Hour
	for name, s := range stores(t, ttl) {
		t.Run(name, func(t *testing.T) {
			put(t, s, "a1", session.Record{Owner: "o", Client: "a"})
			put(t, s, "b1", session.Record{Owner: "o", Client: "b"})
			put(t, s, "a2", session.Record{Owner: "o", Client: "a"})
			put(t, s, "a3", session.Record{Owner: "o", Client: "a"})
			s.End(ctx, "a3")
			time.Sleep(5 * time.Millisecond)
			s.Get(ctx, "a1") // a2 is now the least lately used
			n, idlest, ok, err := s.ClientSessions(ctx, "a", 0)
			if err != nil || n != 2 || !ok || idlest != "a2" {
				t.Fatalf("client a: %d sessions, idlest %q (%v), %v; want 2, a2", n, idlest, ok, err)
			}
			if n, _, ok, err := s.ClientSessions(ctx, "a", time.Minute); n != 2 || ok || err != nil {
				t.Fatalf("client a, none idle a minute: %d, %v, %v", n, ok, err)
			}
			if n, idlest, _, err := s.ClientSessions(ctx, "b", 0); n != 1 || idlest != "b1" || err != nil {
				t.Fatalf("client b: %d sessions, idlest %q, %v", n, idlest, err)
			}
			if n, _, ok, err := s.ClientSessions(ctx, "c", 0); n != 0 || ok || err != nil {
				t.Fatalf("an unknown client: %d, %v, %v", n, ok, err)
			}
		})
	}
}

// A server whose lease lapsed (paused past leaseTTL) must not overwrite
// what the next holder wrote.
func TestRedisLostLeaseWritesNothing(t *testing.T) {
	ctx := context.Background()
	r := redistest.Start(t)
	s, err := session.NewRedisStore(ctx, r.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l, err := s.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	r.Client(t).Del(ctx, "mcp-sandbox:lock:a") // as if it expired
	put(t, s, "a", session.Record{Current: "winner"})
	if err := l.Put(ctx, session.Record{Current: "late"}); !errors.Is(err, session.ErrLeaseLost) {
		t.Fatalf("Put on a lost lease: %v, want ErrLeaseLost", err)
	}
	if rec, _ := s.Get(ctx, "a"); rec.Current != "winner" {
		t.Fatalf("the late write landed: %+v", rec)
	}
}

func TestRedisBadURLAndDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := session.NewRedisStore(ctx, "http://example", 0); err == nil {
		t.Fatal("an http URL was taken for Redis")
	}
	r := redistest.Start(t)
	s, err := session.NewRedisStore(ctx, r.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	put(t, s, "a", session.Record{Current: "x"})
	r.Stop()
	_, err = s.Get(ctx, "a")
	var se *session.StoreError
	if !errors.As(err, &se) {
		t.Fatalf("Get with Redis down: %v, want a StoreError", err)
	}
	r.Start(t)
	// Persistence is off in this server: the record is gone, the store answers again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Get(ctx, "a")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not reconnect: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
