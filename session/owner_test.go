package session_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/session"
	"github.com/mcp-sandbox/mcp-sandbox/session/redistest"
)

// labelReaper reaps every sandbox of its driver that providers.Reapable
// lets go, whatever its server label: what each driver's Reap does for
// the server's own sandboxes.
type labelReaper struct{ providers.Provider }

func (r labelReaper) Reap(ctx context.Context, owner func(string) providers.Liveness) ([]string, error) {
	all, err := r.List(ctx, nil)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, sb := range all {
		if providers.Reapable(sb.Labels, false, owner) {
			if err := r.Destroy(ctx, sb.ID); err != nil {
				return removed, err
			}
			removed = append(removed, sb.ID)
		}
	}
	return removed, nil
}

func ownerTestProvider(t *testing.T) providers.Provider {
	t.Helper()
	lp, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyAll(lp) })
	return labelReaper{lp}
}

func managerOn(t *testing.T, p providers.Provider, s session.Store) *session.Manager {
	t.Helper()
	m, err := session.New(session.Config{Providers: providers.Wrap(map[string]providers.Provider{"local": p}), Default: "local", ServerID: "srv", Store: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// orphan makes a sandbox labelled as owned by owner, as a server that
// crashed or an older server leaves behind.
func orphan(t *testing.T, p providers.Provider, owner string) string {
	t.Helper()
	sb, err := p.Create(context.Background(), providers.CreateOptions{Labels: map[string]string{providers.LabelSession: owner, session.LabelServer: "srv"}})
	if err != nil {
		t.Fatal(err)
	}
	return sb.ID
}

func exists(p providers.Provider, id string) bool {
	_, err := p.Get(context.Background(), id)
	return err == nil
}

// A sandbox can read its labels, and a session ID is a bearer secret:
// neither the labels nor anything the store keeps carries one. What the
// labels carry still tells a reaper a live session from a gone one, and
// labels of older servers (the session ID itself) are still understood.
func TestOwnerLabelsCarryNoSessionID(t *testing.T) {
	ctx := context.Background()
	r := redistest.Start(t)
	rs, err := session.NewRedisStore(ctx, r.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	for name, s := range map[string]session.Store{"memory": session.NewMemoryStore(0), "redis": rs} {
		t.Run(name, func(t *testing.T) {
			p := ownerTestProvider(t)
			m := managerOn(t, p, s)
			live, gone := uuid.NewString(), uuid.NewString()
			if err := m.Start(ctx, live, session.Protocol{Version: "2025-06-18", ClientInfo: json.RawMessage(`{"name":"c"}`)}, `"c"@127.0.0.1`); err != nil {
				t.Fatal(err)
			}
			sb, err := m.Create(ctx, live, "", providers.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := p.Get(ctx, sb.ID)
			for k, v := range got.Labels {
				if strings.Contains(v, live) {
					t.Errorf("label %s=%q carries the session ID", k, v)
				}
			}
			rec, _ := m.Record(ctx, live)
			if b, _ := json.Marshal(rec); strings.Contains(string(b), live) || rec.Owner == "" {
				t.Errorf("the record carries the session ID, or no owner: %s", b)
			}
			if name == "redis" {
				rdb := r.Client(t)
				keys, _ := rdb.Keys(ctx, "*").Result()
				for _, k := range keys {
					vals := []string{k}
					switch typ, _ := rdb.Type(ctx, k).Result(); typ {
					case "string":
						v, _ := rdb.Get(ctx, k).Result()
						vals = append(vals, v)
					case "zset":
						v, _ := rdb.ZRange(ctx, k, 0, -1).Result()
						vals = append(vals, v...)
					case "set":
						v, _ := rdb.SMembers(ctx, k).Result()
						vals = append(vals, v...)
					default:
						t.Errorf("key %s of type %s not looked at", k, typ)
					}
					for _, v := range vals {
						if strings.Contains(v, live) {
							t.Errorf("Redis key %s carries the session ID: %q", k, v)
						}
					}
				}
			}

			_, instance, _ := strings.Cut(m.Owner(live), "@")
			goneNew := orphan(t, p, m.Owner(gone))
			liveOld := orphan(t, p, live+"@"+instance)
			goneOld := orphan(t, p, gone+"@"+instance)
			if !m.Reap(ctx) {
				t.Fatal("did not reap")
			}
			for id, want := range map[string]bool{sb.ID: true, liveOld: true, goneNew: false, goneOld: false} {
				if exists(p, id) != want {
					t.Errorf("sandbox %s exists=%v after reaping, want %v", id, !want, want)
				}
			}
		})
	}
}

// A replica started again on the same Redis (a new process, a new instance)
// shares the owner key: it finds the session a crashed one started by its
// ID, keeps the session's sandbox, and reaps the sandbox of a session gone.
func TestRestartedReplicaKnowsLiveOwners(t *testing.T) {
	ctx := context.Background()
	r := redistest.Start(t)
	open := func() session.Store {
		s, err := session.NewRedisStore(ctx, r.URL, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	p := ownerTestProvider(t)
	first := managerOn(t, p, open())
	live := uuid.NewString()
	sb, err := first.Create(ctx, live, "", providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gone := orphan(t, p, first.Owner(uuid.NewString()))

	again := managerOn(t, p, open())
	if got := again.Liveness(first.Owner(live)); got != providers.OwnerLive {
		t.Fatalf("the restarted replica sees the live session's owner as %v", got)
	}
	if _, id, err := again.Resolve(ctx, live, ""); err != nil || id != sb.ID {
		t.Fatalf("the restarted replica resolves %q, %v; want %s", id, err, sb.ID)
	}
	first.Close(ctx)
	if !again.Reap(ctx) {
		t.Fatal("did not reap")
	}
	if !exists(p, sb.ID) || exists(p, gone) {
		t.Fatalf("after reaping: live session's sandbox exists=%v, gone one's exists=%v", exists(p, sb.ID), exists(p, gone))
	}
}

// A named session's file keeps the owner key: the server started again
// under it knows its session and its sandboxes. A file an older server
// wrote (records by session ID) is read, and moved to owner hashes.
func TestFileStoreKeepsTheOwnerKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "s.json")
	p := ownerTestProvider(t)
	openManager := func() (*session.Manager, *session.FileStore) {
		s, err := session.OpenFileStore(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := session.New(session.Config{Providers: providers.Wrap(map[string]providers.Provider{"local": p}), Default: "local", ServerID: "srv", Store: s, KeepSandboxes: true})
		if err != nil {
			t.Fatal(err)
		}
		return m, s
	}
	m, s := openManager()
	sb, err := m.Create(ctx, "stdio", "", providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owner := m.Owner("stdio")
	m.Detach("stdio")
	m.Close(ctx)
	s.Close()

	m, s = openManager()
	if _, id, err := m.Resolve(ctx, "stdio", ""); err != nil || id != sb.ID {
		t.Fatalf("after a restart: %q, %v; want %s", id, err, sb.ID)
	}
	if h, _, _ := strings.Cut(m.Owner("stdio"), "@"); !strings.HasPrefix(owner, h+"@") {
		t.Fatalf("owner hash changed across a restart: %s, then %s", owner, m.Owner("stdio"))
	}
	m.Detach("stdio")
	m.Close(ctx)
	s.Close()

	// An older server's file: the records by session ID.
	old, _ := json.Marshal(map[string]session.Record{"stdio": {Owner: "stdio@" + uuid.NewString(), Current: sb.ID, Sandboxes: []session.Handle{{Provider: "local", ID: sb.ID}}}})
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	m, s = openManager()
	t.Cleanup(func() { s.Close() })
	if _, id, err := m.Resolve(ctx, "stdio", ""); err != nil || id != sb.ID {
		t.Fatalf("from an older server's file: %q, %v; want %s", id, err, sb.ID)
	}
	m.Detach("stdio")
	m.Close(ctx)
	if b, _ := os.ReadFile(path); strings.Contains(string(b), `"stdio`) {
		t.Fatalf("the file still names the session: %s", b)
	}
}
