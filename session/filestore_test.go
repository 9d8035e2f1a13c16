package session

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A FileStore keeps live records across a reopen, drops ended ones, and
// lets one server at a time use its file.
func TestFileStoreSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions", "work.json")
	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileStore(path); err == nil || !strings.Contains(err.Error(), "another server is using this session name") {
		t.Fatalf("second open while the first holds it: %v", err)
	}
	for id, rec := range map[string]Record{
		"kept":  {Owner: "kept@1", Sandboxes: []Handle{{"local", "a"}}, Current: "a"},
		"ended": {Owner: "ended@1", Sandboxes: []Handle{{"local", "b"}}, Current: "b"},
	} {
		l, err := s.Lock(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Put(ctx, rec); err != nil {
			t.Fatal(err)
		}
		l.Release()
	}
	if _, won, err := s.End(ctx, "ended"); !won || err != nil {
		t.Fatalf("End: %v %v", won, err)
	}
	s.Close()

	s, err = OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if rec, _ := s.Get(ctx, "kept"); rec.Current != "a" || len(rec.Sandboxes) != 1 {
		t.Errorf("kept session after reopen: %+v", rec)
	}
	if rec, _ := s.Get(ctx, "ended"); rec.Ended || len(rec.Sandboxes) != 0 {
		t.Errorf("ended session after reopen: %+v, want a fresh start", rec)
	}
}

func TestFileStoreCorruptFileIsNamed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "work.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	_, err := OpenFileStore(path)
	if err == nil || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), "remove the file") {
		t.Fatalf("corrupt file: %v", err)
	}
	// The lock went with the failed open.
	os.Remove(path)
	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatalf("open after the corrupt file was removed: %v", err)
	}
	s.Close()
}
