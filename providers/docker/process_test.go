package docker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
)

// imageAsNobody commits a sandbox prepared by setup (run as root) into an image
// whose commands run as nobody.
func imageAsNobody(t *testing.T, p *docker.Provider, setup string) string {
	t.Helper()
	base := create(t, p, providers.CreateOptions{})
	sh(t, p, base.ID, setup)
	tag := "mcp-sandbox-test-nobody:" + randomSuffix()
	if _, err := p.Client().ContainerCommit(context.Background(), base.ID, client.ContainerCommitOptions{Reference: tag, Changes: []string{"USER 65534:65534"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Client().ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true}) })
	return tag
}

// Processes work for an image user without root, and where the image has
// no writable /tmp, run_command's path still runs commands (as plain
// execs) while starting a process says what the image lacks.
func TestProcessesAsNonRoot(t *testing.T) {
	// The image's own /tmp: the disk limit's in-memory /tmp would be
	// writable whatever the image says.
	p := open(t, settings(docker.EnvDisk, "none"))
	ctx := context.Background()
	for _, tc := range []struct {
		name, setup string
		canKeep     bool
	}{
		{"writable tmp", "true", true},
		{"no writable tmp", "chmod 755 /tmp", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := create(t, p, providers.CreateOptions{Image: imageAsNobody(t, p, tc.setup)})
			var out strings.Builder
			res, err := p.RunProcess(ctx, sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "id -u; exit 4", Stdin: []byte("in")}, Wait: 10 * time.Second, KeepAfter: 1000, Stdout: &out})
			if err != nil || res.ExitCode != 4 || out.String() != "65534\n" || res.ProcessID != "" {
				t.Fatalf("RunProcess: %+v %q %v", res, out.String(), err)
			}
			in, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "id -u; sleep 1000"})
			if !tc.canKeep {
				if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "writable /tmp") {
					t.Fatalf("StartProcess without a writable /tmp: want an unavailable error naming it, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 100, Wait: 10 * time.Second})
			if err != nil || string(got.Data) != "65534\n" {
				t.Fatalf("ReadOutput: %q %v", got.Data, err)
			}
			if err := p.SignalProcess(ctx, sb.ID, in.ID, "TERM"); err != nil {
				t.Fatal(err)
			}
			if in, err = p.WaitProcess(ctx, sb.ID, in.ID, 10*time.Second); err != nil || in.Running || in.ExitCode != 143 {
				t.Fatalf("after TERM: %+v %v", in, err)
			}
		})
	}
}

// A child that left the command's process group (setsid) still dies with
// the process on its timeout and on its removal: it carries the marker.
func TestProcessKillReachesChildrenOutsideTheGroup(t *testing.T) {
	p := open(t, settings())
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{{"timeout", 500 * time.Millisecond}, {"remove", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "setsid sleep 1000 & echo $!; wait", Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 100, Wait: 10 * time.Second})
			if err != nil || !strings.HasSuffix(string(out.Data), "\n") {
				t.Fatalf("child pid: %q %v", out.Data, err)
			}
			child := strings.TrimSpace(string(out.Data))
			if tc.timeout > 0 {
				if in, err = p.WaitProcess(ctx, sb.ID, in.ID, 10*time.Second); err != nil || !in.TimedOut {
					t.Fatalf("after the timeout: %+v %v", in, err)
				}
			} else if err := p.RemoveProcess(ctx, sb.ID, in.ID); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if sh(t, p, sb.ID, "kill -0 "+child+" 2>/dev/null && ! grep -q '^State:.*Z' /proc/"+child+"/status && echo alive; true") == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("child %s outside the group survived", child)
				}
			}
		})
	}
}

// A wait the caller gives up on returns at once, though the sandbox side
// of it waits on.
func TestProcessWaitHonoursCancellation(t *testing.T) {
	p := open(t, settings())
	sb := create(t, p, providers.CreateOptions{})
	in, err := p.StartProcess(context.Background(), sb.ID, providers.ProcessSpec{Command: "sleep 1000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"WaitProcess", func(ctx context.Context) error {
			_, err := p.WaitProcess(ctx, sb.ID, in.ID, 30*time.Second)
			return err
		}},
		{"ReadOutput", func(ctx context.Context) error {
			_, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 10, Wait: 30 * time.Second})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := tc.call(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
				t.Fatalf("got %v after %v; want the deadline error at once", err, time.Since(start))
			}
		})
	}
}

// A foreground run streams every byte even when the output outgrows what
// the process keeps: the copier waits for the follower before it drops a
// segment. The record then keeps the head and the tail.
func TestRunProcessStreamsEverythingPastTheLimit(t *testing.T) {
	p := open(t, settings())
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	var want strings.Builder
	for i := 1; i <= 100000; i++ {
		fmt.Fprintln(&want, i)
	}
	var out strings.Builder
	res, err := p.RunProcess(ctx, sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "seq 1 100000", OutputLimit: 8000},
		Wait: 30 * time.Second, KeepAfter: 1000, Stdout: &out})
	if err != nil || res.ExitCode != 0 || res.Running || res.ProcessID == "" {
		t.Fatalf("%+v %v", res, err)
	}
	if out.String() != want.String() {
		t.Fatalf("streamed %d bytes, want all %d", out.Len(), want.Len())
	}
	tail, err := p.ReadOutput(ctx, sb.ID, res.ProcessID, providers.OutputRequest{Stream: providers.Stdout, Offset: 4000, Limit: 1 << 20})
	if err != nil || tail.Skipped == 0 || tail.Total != int64(want.Len()) || !strings.HasSuffix(want.String(), string(tail.Data)) || len(tail.Data) > 4000 {
		t.Fatalf("kept tail: %d bytes at %d, skipped %d, total %d, %v", len(tail.Data), tail.Offset, tail.Skipped, tail.Total, err)
	}
}

// A command that never stops printing still detaches at the wait, and
// starts in parallel get numbers of their own.
func TestRunProcessChattyDetachesAndConcurrentStarts(t *testing.T) {
	p := open(t, settings())
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	start := time.Now()
	res, err := p.RunProcess(ctx, sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "while :; do echo chatter; done"},
		Wait: 300 * time.Millisecond, KeepAfter: 1000, Stdout: io.Discard})
	if err != nil || !res.Running || res.ProcessID == "" || time.Since(start) > 5*time.Second {
		t.Fatalf("%+v %v after %v", res, err, time.Since(start))
	}
	if err := p.RemoveProcess(ctx, sb.ID, res.ProcessID); err != nil {
		t.Fatal(err)
	}

	ids := make(chan string, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "exit 0"})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- in.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{res.ProcessID: true}
	for id := range ids {
		if seen[id] {
			t.Errorf("process ID %s given twice", id)
		}
		seen[id] = true
	}
}
