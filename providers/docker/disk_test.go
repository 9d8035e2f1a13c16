package docker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
)

// TestDiskLimit fills every place a sandbox can write past the limit: the
// writes fail inside the sandbox, the engine's disk keeps its space, and
// destroying the sandbox leaves no volume behind.
func TestDiskLimit(t *testing.T) {
	p := open(t, settings(docker.EnvDisk, "16m"))
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	if !strings.Contains(sb.DiskLimit, "16MiB") {
		t.Errorf("DiskLimit %q does not state the limit", sb.DiskLimit)
	}
	if got, err := p.Get(ctx, sb.ID); err != nil || got.DiskLimit != sb.DiskLimit {
		t.Errorf("Get: DiskLimit %q, %v; want %q", got.DiskLimit, err, sb.DiskLimit)
	}
	for _, dir := range []string{"/workspace", "/tmp", "/", "/root", "/etc"} {
		var errOut strings.Builder
		res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{
			Command: "dd if=/dev/zero of=" + strings.TrimSuffix(dir, "/") + "/fill bs=1M count=48; r=$?; rm -f " + strings.TrimSuffix(dir, "/") + "/fill; exit $r",
			Stderr:  &errOut,
		})
		if err != nil || res.ExitCode == 0 {
			t.Errorf("writing 48 MiB to %s with a 16 MiB limit: exit %d, %v, %s", dir, res.ExitCode, err, errOut.String())
		}
		if !strings.Contains(errOut.String(), "No space left") && !strings.Contains(errOut.String(), "Read-only file system") &&
			!strings.Contains(errOut.String(), "quota") {
			t.Errorf("writing to %s: the error does not say why: %q", dir, errOut.String())
		}
	}
	// What a sandbox may write still works, and the file tools see it.
	if err := p.WriteFile(ctx, sb.ID, "kept.txt", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	if out := sh(t, p, sb.ID, "cat kept.txt; echo x > /tmp/t && cat /tmp/t"); out != "keptx\n" {
		t.Errorf("writes within the limit: %q", out)
	}
	ins, err := p.Client().ContainerInspect(ctx, sb.ID, client.ContainerInspectOptions{Size: true})
	if err != nil {
		t.Fatal(err)
	}
	if rw := ins.Container.SizeRw; rw == nil || *rw > 16<<20 {
		t.Errorf("the container's writable layer on the engine's disk holds %v bytes, past the 16 MiB limit", rw)
	}
	var volumes []string
	for _, m := range ins.Container.Mounts {
		if m.Type == mount.TypeVolume {
			volumes = append(volumes, m.Name)
		}
	}
	if err := p.Destroy(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	for _, v := range volumes {
		if _, err := p.Client().VolumeInspect(ctx, v, client.VolumeInspectOptions{}); err == nil {
			t.Errorf("volume %s outlived its sandbox", v)
		}
	}
}

func TestDiskLimitNone(t *testing.T) {
	p := open(t, settings(docker.EnvDisk, "none"))
	sb := create(t, p, providers.CreateOptions{})
	if sb.DiskLimit != "" {
		t.Errorf("DiskLimit %q with no limit", sb.DiskLimit)
	}
	if out := sh(t, p, sb.ID, "echo x > /root/f && cat /root/f"); out != "x\n" {
		t.Errorf("root file system: %q", out)
	}
}

// The in-memory workdir and /tmp live as long as the container runs: a
// restart (the engine's, or the last resort against a fork bomb) empties
// them, and the sandbox goes on with both writable and bounded.
func TestDiskLimitEmptiedByRestart(t *testing.T) {
	p := open(t, settings(docker.EnvDisk, "16m"))
	ctx := context.Background()
	sb := create(t, p, providers.CreateOptions{})
	if !strings.Contains(sb.DiskLimit, "in memory") {
		t.Skipf("the engine bounds the whole container (%s): its files outlive a restart", sb.DiskLimit)
	}
	sh(t, p, sb.ID, "echo x > kept.txt")
	timeout := 0
	if _, err := p.Client().ContainerStop(ctx, sb.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	if out := sh(t, p, sb.ID, "ls -A; echo y > new.txt && cat new.txt; dd if=/dev/zero of=f bs=1M count=32 2>&1 | grep -c 'No space'"); out != "y\n1\n" {
		t.Errorf("after a restart: %q", out)
	}
}
