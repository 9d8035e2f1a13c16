package docker

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// Disk limits. A container's writable layer has no bound of its own: a
// sandbox could fill the engine's disk. Where the storage driver can cap a
// container's layer (StorageOpt size: overlay2 on xfs mounted with pquota,
// btrfs, zfs, devicemapper), the whole container gets the limit. Elsewhere
// (overlay2 on ext4, the common case) the places a sandbox writes, its
// workdir and /tmp, are size-capped in-memory file systems and everything
// else is read-only: nothing a sandbox writes reaches the engine's disk.
// The in-memory space counts against the memory limit too.

// diskKind is how a sandbox's disk is bounded.
type diskKind int

const (
	diskNone  diskKind = iota // MCP_SANDBOX_DOCKER_DISK=none
	diskQuota                 // the storage driver's per-container size
	diskTmpfs                 // capped tmpfs volumes, read-only root
)

// diskState remembers, once per driver, whether the engine's storage
// driver takes a per-container size: asked of the engine's info first, and
// corrected by the engine's own refusal at the first create.
type diskState struct {
	once sync.Once
	mu   sync.Mutex
	kind diskKind
}

// quotaDrivers take StorageOpt size; overlay2 only on xfs (and only when
// mounted with pquota, which the engine alone can tell: it refuses the
// create otherwise, and the driver falls back then).
var quotaDrivers = map[string]bool{"btrfs": true, "zfs": true, "devicemapper": true, "windowsfilter": true}

func (p *Provider) diskKind(ctx context.Context) diskKind {
	if p.set.disk == 0 {
		return diskNone
	}
	p.disk.once.Do(func() {
		kind := diskTmpfs
		if res, err := p.cli.Info(ctx, client.InfoOptions{}); err == nil {
			info := res.Info
			backing := ""
			for _, kv := range info.DriverStatus {
				if kv[0] == "Backing Filesystem" {
					backing = kv[1]
				}
			}
			if quotaDrivers[info.Driver] || (info.Driver == "overlay2" || info.Driver == "overlay") && backing == "xfs" {
				kind = diskQuota
			}
			p.log.Debug("storage driver", "driver", info.Driver, "backing", backing, "quota", kind == diskQuota)
		}
		p.disk.mu.Lock()
		p.disk.kind = kind
		p.disk.mu.Unlock()
	})
	p.disk.mu.Lock()
	defer p.disk.mu.Unlock()
	return p.disk.kind
}

// quotaRefusal is the engine refusing a per-container size: its storage
// driver takes none.
type quotaRefusal struct{ error }

func isQuotaRefusal(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "storage-opt") || strings.Contains(msg, "storage opt") || strings.Contains(msg, "quota")
}

// noQuota falls back to tmpfs for good.
func (p *Provider) noQuota(why error) {
	p.log.Info("the engine's storage driver takes no per-container size; sandboxes get size-capped tmpfs instead", "err", why)
	p.disk.mu.Lock()
	p.disk.kind = diskTmpfs
	p.disk.mu.Unlock()
}

// applyDisk sets the limit on a container's host config; uid and gid own
// the workdir.
func (p *Provider) applyDisk(hc *container.HostConfig, kind diskKind, uid, gid int) {
	size := p.set.disk
	switch kind {
	case diskQuota:
		hc.StorageOpt = map[string]string{"size": fmt.Sprint(size)}
	case diskTmpfs:
		hc.ReadonlyRootfs = true
		// Anonymous volumes of the local driver, not HostConfig.Tmpfs: the
		// engine's archive API (file reads, stats) sees volumes, not tmpfs
		// mounts, and removing the container removes them.
		vol := func(target, opts string) mount.Mount {
			return mount.Mount{Type: mount.TypeVolume, Target: target, VolumeOptions: &mount.VolumeOptions{
				NoCopy: true,
				DriverConfig: &mount.Driver{Name: "local", Options: map[string]string{
					"type": "tmpfs", "device": "tmpfs", "o": fmt.Sprintf("size=%d,nosuid,nodev,%s", size, opts),
				}},
			}}
		}
		hc.Mounts = append(hc.Mounts, vol("/tmp", "mode=1777"))
		if p.set.workdir != "/tmp" {
			hc.Mounts = append(hc.Mounts, vol(p.set.workdir, fmt.Sprintf("mode=0755,uid=%d,gid=%d", uid, gid)))
		}
	}
}

// describeDisk is the limit as sandbox_create reports it.
func (p *Provider) describeDisk(kind diskKind) string {
	size := units.BytesSize(float64(p.set.disk))
	switch kind {
	case diskQuota:
		return size + " for the whole sandbox (storage quota)"
	case diskTmpfs:
		where := p.set.workdir + " and /tmp"
		if p.set.workdir == "/tmp" {
			where = "/tmp"
		}
		return size + " each on " + where + " (in memory, within the memory limit); the rest is read-only"
	}
	return ""
}
