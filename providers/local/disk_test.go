package local

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local/jail"
)

// diskSandbox is a sandbox with a 16 MiB disk, on a machine that can give
// one (a root server with loop devices; CI is one).
func diskSandbox(t *testing.T) (*Provider, providers.Sandbox) {
	t.Helper()
	if err := diskSupport(); err != nil {
		if os.Getenv("CI") == "true" && os.Geteuid() == 0 {
			t.Fatalf("a root server in CI must give disk limits: %v", err)
		}
		t.Skip(err)
	}
	p, err := NewWith(t.TempDir(), Options{Limits: jail.Limits{Processes: 512}, Disk: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if p.disks.size == 0 {
		t.Skip(p.diskWhy)
	}
	sb, err := p.Create(context.Background(), providers.CreateOptions{Name: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	return p, sb
}

// TestDiskLimit fills the sandbox's directory past its limit, from a
// command and through write_file: both fail, saying the disk is full, the
// host keeps its space, and once the sandbox frees space it writes again.
// Destroying the sandbox leaves no mount and no loop device behind.
func TestDiskLimit(t *testing.T) {
	p, sb := diskSandbox(t)
	ctx := context.Background()
	if !strings.Contains(sb.DiskLimit, "16MiB") || !strings.Contains(sb.DiskLimit, "/workspace") {
		t.Errorf("DiskLimit %q does not state the limit and where it holds", sb.DiskLimit)
	}
	if got, err := p.Get(ctx, sb.ID); err != nil || got.DiskLimit != sb.DiskLimit {
		t.Errorf("Get: DiskLimit %q, %v; want %q", got.DiskLimit, err, sb.DiskLimit)
	}

	res, _, stderr := run(t, p, sb.ID, providers.ExecRequest{Command: "dd if=/dev/zero of=fill bs=1M count=48"})
	if res.ExitCode == 0 || !strings.Contains(stderr, "No space left") {
		t.Errorf("dd of 48 MiB into a 16 MiB sandbox: exit %d, %q", res.ExitCode, stderr)
	}
	err := p.WriteFile(ctx, sb.ID, "big", bytes.Repeat([]byte("x"), 32<<20), 0)
	if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), "disk is full") {
		t.Errorf("write_file of 32 MiB: %v, want an error saying the disk is full", err)
	}
	var st unix.Stat_t
	img := filepath.Join(p.base(sb.ID), diskImage)
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 20<<20 {
		t.Errorf("the image takes %d bytes of the host's disk, past the 16 MiB limit", used)
	}
	// The host directory shows what the sandbox wrote (the mount), so the
	// server's file tools and the commands see one tree.
	if fi, err := os.Stat(filepath.Join(p.root(sb.ID), "fill")); err != nil || fi.Size() < 8<<20 {
		t.Errorf("the sandbox's partial file is not where the server reads: %v", err)
	}
	if res, _, stderr := run(t, p, sb.ID, providers.ExecRequest{Command: "rm fill && echo ok > small && cat small"}); res.ExitCode != 0 {
		t.Errorf("writing after freeing space: exit %d, %q", res.ExitCode, stderr)
	}

	root := p.root(sb.ID)
	if err := p.Destroy(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mounts, []byte(root)) {
		t.Errorf("the sandbox's file system is still mounted after Destroy")
	}
	if _, err := os.Stat(p.base(sb.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sandbox's directory is still there: %v", err)
	}
	backing, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, b := range backing {
		if f, _ := os.ReadFile(b); bytes.Contains(f, []byte(img)) {
			t.Errorf("%s still holds the sandbox's image", b)
		}
	}
}

// TestDiskMountedAgain: after a machine restart the image is not mounted;
// the next use mounts it before anything writes into the bare directory,
// with the files kept and the limit holding.
func TestDiskMountedAgain(t *testing.T) {
	p, sb := diskSandbox(t)
	ctx := context.Background()
	if err := p.WriteFile(ctx, sb.ID, "kept.txt", []byte("kept\n"), 0); err != nil {
		t.Fatal(err)
	}
	// What a reboot does: the jail and the mount are gone.
	p.endJail(sb.ID)
	if err := unix.Unmount(p.root(sb.ID), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.root(sb.ID), "kept.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the bare directory shows the file system's files (%v): the unmount did not happen", err)
	}
	r, _, err := p.ReadFile(ctx, sb.ID, "kept.txt")
	if err != nil {
		t.Fatalf("read_file after the restart: %v", err)
	}
	r.Close()
	res, out, stderr := run(t, p, sb.ID, providers.ExecRequest{Command: "cat kept.txt; dd if=/dev/zero of=fill bs=1M count=48 2>&1 | grep -c 'No space left'"})
	if res.ExitCode != 0 || out != "kept\n1\n" {
		t.Errorf("a command after the restart: exit %d, %q %q; want the kept file and the limit", res.ExitCode, out, stderr)
	}
}

// TestDiskSpare: the file system a sandbox gets from the spare made in the
// background is its own, bounded like a cold one; closing the provider
// leaves no spare behind.
func TestDiskSpare(t *testing.T) {
	p, first := diskSandbox(t)
	ctx := context.Background()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		p.disks.spareMu.Lock()
		ready := p.disks.spare != nil
		p.disks.spareMu.Unlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no spare file system 20 s after a create")
		}
	}
	second, err := p.Create(ctx, providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(ctx, second.ID) })
	if err := p.WriteFile(ctx, first.ID, "mine", []byte("first"), 0); err != nil {
		t.Fatal(err)
	}
	res, out, stderr := run(t, p, second.ID, providers.ExecRequest{Command: "ls; dd if=/dev/zero of=fill bs=1M count=48 2>&1 | grep -c 'No space left'"})
	if res.ExitCode != 0 || out != "1\n" {
		t.Errorf("the second sandbox: exit %d, %q %q; want an empty, bounded /workspace", res.ExitCode, out, stderr)
	}
	p.Close()
	p.disks.spareMu.Lock()
	filling := p.disks.filling
	p.disks.spareMu.Unlock()
	for deadline := time.Now().Add(20 * time.Second); filling && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		p.disks.spareMu.Lock()
		filling = p.disks.filling
		p.disks.spareMu.Unlock()
	}
	if left, _ := filepath.Glob(filepath.Join(p.disks.cacheDir(), "spare-*")); len(left) > 0 {
		t.Errorf("spare images left after Close: %v", left)
	}
}

// TestDiskLimitNeedsARootServer: without root no limit holds, and the
// sandbox says none rather than claiming one.
func TestDiskLimitNeedsARootServer(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as an unprivileged user (CI does, see .ci/jail-unprivileged.sh)")
	}
	p, err := NewWith(t.TempDir(), Options{Limits: jail.Limits{Processes: 512}, Disk: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if p.disks.size != 0 || !strings.Contains(p.diskWhy, "root") {
		t.Fatalf("an unprivileged server claims a disk limit (size %d, why %q)", p.disks.size, p.diskWhy)
	}
	sb, err := p.Create(context.Background(), providers.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	if sb.DiskLimit != "" {
		t.Errorf("DiskLimit %q on a server that cannot give one", sb.DiskLimit)
	}
}

func spareReady(p *Provider) bool {
	p.disks.spareMu.Lock()
	defer p.disks.spareMu.Unlock()
	return p.disks.spare != nil
}

// BenchmarkCreate: sandbox_create on local with and without a file system
// of its own (go test -run '^$' -bench Create ./providers/local).
func BenchmarkCreate(b *testing.B) {
	for _, disk := range []int64{0, 1 << 30} {
		name := map[bool]string{true: "disk-1GiB", false: "no-disk"}[disk > 0]
		b.Run(name, func(b *testing.B) {
			if disk > 0 && diskSupport() != nil {
				b.Skip(diskSupport())
			}
			p, err := NewWith(b.TempDir(), Options{Limits: jail.Limits{Processes: 512}, Disk: disk})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if sb, err := p.Create(ctx, providers.CreateOptions{}); err == nil { // the template, once
				p.Destroy(ctx, sb.ID)
			}
			b.ResetTimer()
			for range b.N {
				sb, err := p.Create(ctx, providers.CreateOptions{})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				p.Destroy(ctx, sb.ID)
				// Sandboxes come one at a time, not back to back: the next
				// finds its spare ready (and the PID 1 spare, made faster).
				for disk > 0 && !spareReady(p) {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond)
				b.StartTimer()
			}
		})
	}
}
