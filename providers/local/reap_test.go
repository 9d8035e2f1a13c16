package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func TestReap(t *testing.T) {
	ctx := context.Background()
	p, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.server = "me"
	made := func(labels map[string]string) string {
		sb, err := p.Create(ctx, providers.CreateOptions{Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
		return sb.ID
	}
	dead := made(map[string]string{labelServer: "me", providers.LabelSession: "dead"})
	// A killed process of the dead owner goes with its sandbox.
	if _, err := p.Exec(ctx, dead, providers.ExecRequest{Command: "sleep 1000 >/dev/null 2>&1 &"}); err != nil {
		t.Fatal(err)
	}
	keep := []string{
		made(map[string]string{labelServer: "me", providers.LabelSession: "live"}),
		made(map[string]string{labelServer: "me", providers.LabelSession: "elsewhere"}),
		made(map[string]string{labelServer: "me", providers.LabelSession: "dead", providers.LabelKeep: "true"}),
		made(map[string]string{labelServer: "another server", providers.LabelSession: "dead"}),
	}
	// What a crash between mkdir and metadata leaves: removed once old,
	// left alone while a create may still be under way.
	oldHalf, youngHalf := filepath.Join(p.dir, uuid.NewString()), filepath.Join(p.dir, uuid.NewString())
	for _, d := range []string{oldHalf, youngHalf} {
		if err := os.MkdirAll(filepath.Join(d, "root"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-time.Hour)
	os.Chtimes(oldHalf, long, long)

	owner := func(label string) providers.Liveness {
		return map[string]providers.Liveness{"live": providers.OwnerLive, "dead": providers.OwnerDead}[label]
	}
	removed, err := p.Reap(ctx, owner)
	if err != nil || !slices.Equal(removed, []string{dead}) {
		t.Fatalf("Reap = %v, %v; want just %s", removed, err, dead)
	}
	if _, err := os.Stat(p.base(dead)); !os.IsNotExist(err) {
		t.Errorf("the dead owner's sandbox directory is still there: %v", err)
	}
	for _, id := range keep {
		if _, err := p.Get(ctx, id); err != nil {
			t.Errorf("%s was reaped: %v", id, err)
		}
	}
	if _, err := os.Stat(oldHalf); !os.IsNotExist(err) {
		t.Errorf("an old half-made sandbox directory is still there: %v", err)
	}
	if _, err := os.Stat(youngHalf); err != nil {
		t.Errorf("a young half-made sandbox directory was removed: %v", err)
	}
}
