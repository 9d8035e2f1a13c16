package session

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// FileStore keeps records in memory and in one file, so that a server
// started again under the same file finds its sessions: what a named stdio
// session (--session-name) needs to be reattached after a restart. One
// server at a time uses a file: it holds an exclusive lock on it while it
// runs, and a second one is refused.
//
// The file holds only live records: an ended session is dropped from it, so
// the next server under the same name starts a fresh session.
type FileStore struct {
	*MemoryStore
	path string
	lock *os.File
}

// lockWait is how long OpenFileStore waits for another holder of the
// session name to let go before saying it is in use.
const lockWait = 2 * time.Second

// OpenFileStore opens (creating it if need be) the store file at path.
func OpenFileStore(path string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the session directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open the session lock: %w", err)
	}
	// The lock is let go a moment after its holder closes it: a server
	// restarted at once finds its old self still exiting, and a process
	// forked meanwhile holds the descriptor until its exec.
	err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	for deadline := time.Now().Add(lockWait); errors.Is(err, syscall.EWOULDBLOCK) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("another server is using this session name; stop it, or choose another name")
		}
		return nil, fmt.Errorf("cannot lock %s: %w", lock.Name(), err)
	}
	s := &FileStore{MemoryStore: NewMemoryStore(0), path: path, lock: lock}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		lock.Close()
		return nil, fmt.Errorf("cannot read the sessions saved in %s: %w", path, err)
	default:
		older, err := s.load(b)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("the sessions saved in %s are corrupt (%v); remove the file to start afresh (their kept sandboxes then go at their expiry)", path, err)
		}
		if older {
			if err := s.save(); err != nil { // no session ID left in the file
				lock.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

// fileContents is what the file holds: the store's settings (the owner
// key among them, so that a restarted server knows its session's records
// and sandboxes again) and the live records, by owner hash.
type fileContents struct {
	Pins     map[string]string `json:"pins"`
	Sessions map[string]Record `json:"sessions"`
}

// load reads the file's contents into the store. A file written by an
// older server holds only the records, by session ID: they are moved to
// their owner hash under a new key (older is true).
func (s *FileStore) load(b []byte) (older bool, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return false, err
	}
	var c fileContents
	if _, ok := top["sessions"]; ok {
		if err := json.Unmarshal(b, &c); err != nil {
			return false, err
		}
	} else {
		older = true
		var old map[string]Record
		if err := json.Unmarshal(b, &old); err != nil {
			return false, err
		}
		key := newOwnerKey()
		raw, _ := hex.DecodeString(key)
		c = fileContents{Pins: map[string]string{ownerKeyPin: key}, Sessions: map[string]Record{}}
		for id, r := range old {
			if _, instance, ok := strings.Cut(r.Owner, "@"); ok {
				r.Owner = ownerHash(raw, id) + "@" + instance
			}
			c.Sessions[ownerHash(raw, id)] = r
		}
	}
	s.pins = c.Pins
	for id, r := range c.Sessions {
		if !r.Ended {
			s.records[id] = &memRecord{rec: r}
		}
	}
	return older, nil
}

// save writes the live records to the file, whole or not at all (a crash
// mid-write leaves the previous version).
func (s *FileStore) save() error {
	s.mu.Lock()
	c := fileContents{Pins: maps.Clone(s.pins), Sessions: map[string]Record{}}
	for id, r := range s.records {
		if !r.rec.Ended {
			c.Sessions[id] = r.rec.clone()
		}
	}
	s.mu.Unlock()
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return &StoreError{err}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return &StoreError{err}
	}
	return nil
}

func (s *FileStore) Lock(ctx context.Context, id string) (Lease, error) {
	l, err := s.MemoryStore.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	return fileLease{l, s}, nil
}

type fileLease struct {
	Lease
	s *FileStore
}

func (l fileLease) Put(ctx context.Context, r Record) error {
	if err := l.Lease.Put(ctx, r); err != nil {
		return err
	}
	return l.s.save()
}

func (s *FileStore) End(ctx context.Context, id string) (Record, bool, error) {
	rec, won, err := s.MemoryStore.End(ctx, id)
	if err != nil || !won {
		return rec, won, err
	}
	return rec, won, s.save()
}

// Pin keeps the setting in the file too.
func (s *FileStore) Pin(ctx context.Context, name, value string) (string, error) {
	v, err := s.MemoryStore.Pin(ctx, name, value)
	if err != nil || v != value {
		return v, err
	}
	return v, s.save()
}

// Close gives up the file's lock, for the next server.
func (s *FileStore) Close() error { return s.lock.Close() }

// ValidSessionName checks a --session-name: it names a file in the state
// dir, so it is kept to a safe alphabet.
func ValidSessionName(name string) error {
	if name == "" || len(name) > 64 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%q is not a session name: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'", name)
	}
	return nil
}
