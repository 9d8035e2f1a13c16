// Package redistest starts a redis-server of a test's own, for tests of
// the Redis session store and of servers sharing one.
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server of the test's own, on a free loopback port.
type Server struct {
	URL  string
	addr string
	dir  string
	cmd  *exec.Cmd
	// Persistent: every write is appended to disk before it is answered,
	// so a crash loses nothing (else a restart starts empty).
	Persistent bool
}

// Start starts Debian's redis-server with its data in a temp dir. It
// skips without the binary, except under CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartPersistent is Start with an append-only file synced on every write.
func StartPersistent(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, persistent bool) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (apt-get install -y redis-server)")
		}
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := &Server{URL: "redis://" + addr + "/0", addr: addr, dir: t.TempDir(), Persistent: persistent}
	r.Start(t)
	return r
}

// Start starts the server again (after Stop) on its address and dir.
func (r *Server) Start(t testing.TB) {
	t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	aof := []string{"--appendonly", "no"}
	if r.Persistent {
		aof = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	r.cmd = exec.Command("redis-server", append([]string{"--bind", "127.0.0.1", "--port", port, "--dir", r.dir,
		"--save", "", "--logfile", filepath.Join(r.dir, "redis.log")}, aof...)...)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := r.cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			t.Fatalf("redis-server on %s did not answer in 10s:\n%s", r.addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server as a crash would.
func (r *Server) Stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// Client is a plain connection to the server, to look at what the store wrote.
func (r *Server) Client(t testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}
