package session

import (
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The lock files of servers dead for long are removed; a live server's and
// a recently dead one's (its sandboxes may not be reaped yet) stay.
func TestPruneInstances(t *testing.T) {
	dir := t.TempDir()
	live, err := lockInstance(dir, uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unlockInstance(live) })
	dead := func(age time.Duration) string {
		f, err := lockInstance(dir, uuid.NewString())
		if err != nil {
			t.Fatal(err)
		}
		f.Close() // as a killed process: the file stays, the lock goes
		then := time.Now().Add(-age)
		os.Chtimes(f.Name(), then, then)
		return f.Name()
	}
	long, recent := dead(8*24*time.Hour), dead(time.Hour)
	old := time.Now().Add(-8 * 24 * time.Hour)
	os.Chtimes(live.Name(), old, old)

	pruneInstances(dir, time.Now())
	for name, want := range map[string]bool{live.Name(): true, recent: true, long: false} {
		if _, err := os.Stat(name); (err == nil) != want {
			t.Errorf("%s: present=%v, want %v", name, err == nil, want)
		}
	}
}
