package jail

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

var cgroupSeq atomic.Int64

// applyLimits puts PID 1 into cgroups of its own that bound the sandbox,
// where the server may create them, and says which limits hold that way.
// The rest fall to rlimits, set by PID 1 itself.
func applyLimits(pid int, l Limits) (paths []string, report string) {
	name := fmt.Sprintf("mcp-sandbox-jail-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, cgroupSeq.Add(1))
	var held []string
	if isCgroup2(cgroupRoot) {
		paths, held = cgroup2Limits(pid, name, l)
	} else {
		paths, held = cgroup1Limits(pid, name, l)
	}
	return paths, strings.Join(held, ", ")
}

// cgroup1Limits uses the v1 pids, memory and cpu controllers that are
// mounted and writable, each under the server's own cgroup.
func cgroup1Limits(pid int, name string, l Limits) (paths, held []string) {
	own := ownCgroups()
	try := func(ctrl, file, value, what string) {
		base := filepath.Join(cgroupRoot, ctrl, own[ctrl])
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return
		}
		paths = append(paths, dir)
		if os.WriteFile(filepath.Join(dir, file), []byte(value), 0) != nil ||
			os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0) != nil {
			return
		}
		held = append(held, what+" (cgroup v1 "+ctrl+")")
	}
	if l.Processes > 0 {
		try("pids", "pids.max", strconv.Itoa(l.Processes), fmt.Sprintf("processes %d", l.Processes))
	}
	if l.Memory > 0 {
		try("memory", "memory.limit_in_bytes", strconv.FormatInt(l.Memory, 10), fmt.Sprintf("memory %d bytes", l.Memory))
	}
	if l.CPU > 0 {
		period := 100000
		try("cpu", "cpu.cfs_quota_us", strconv.Itoa(int(l.CPU*float64(period))), fmt.Sprintf("cpu %.2g", l.CPU))
	}
	return paths, held
}

// cgroup2Limits makes one child of the server's cgroup v2 with the
// controllers its parent delegates.
func cgroup2Limits(pid int, name string, l Limits) (paths, held []string) {
	dir := filepath.Join(cgroupRoot, ownCgroups()[""], name)
	if os.Mkdir(dir, 0o755) != nil {
		return nil, nil
	}
	paths = []string{dir}
	if os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0) != nil {
		return paths, nil
	}
	set := func(file, value, what string) {
		if os.WriteFile(filepath.Join(dir, file), []byte(value), 0) == nil {
			held = append(held, what+" (cgroup v2)")
		}
	}
	if l.Processes > 0 {
		set("pids.max", strconv.Itoa(l.Processes), fmt.Sprintf("processes %d", l.Processes))
	}
	if l.Memory > 0 {
		set("memory.max", strconv.FormatInt(l.Memory, 10), fmt.Sprintf("memory %d bytes", l.Memory))
		os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
	}
	if l.CPU > 0 {
		set("cpu.max", fmt.Sprintf("%d 100000", int(l.CPU*100000)), fmt.Sprintf("cpu %.2g", l.CPU))
	}
	return paths, held
}

func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// ownCgroups maps each v1 controller ("" for v2) to the server's cgroup.
func ownCgroups() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// removeCgroups removes a jail's cgroups once its processes are gone.
func removeCgroups(paths []string) error {
	var errs []error
	for _, p := range paths {
		var err error
		for range 200 { // the kernel may take a moment to let go of the last task
			if err = os.Remove(p); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("jail: removing cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// commandRlimits are the limits PID 1 gives each command where no cgroup
// holds them; the command's shell sets them before the command runs, hard
// and soft, so nothing the command does comes first or lifts them.
type commandRlimits struct {
	nproc   uint64 // RLIMIT_NPROC; 0: none
	vmemKiB uint64 // RLIMIT_AS, per process; 0: none
}

// script is the shell prelude that sets the limits ("" when none): dash
// calls the process limit -p, bash -u.
func (rl commandRlimits) script() string {
	s := ""
	if rl.nproc > 0 {
		s += fmt.Sprintf("{ ulimit -u %[1]d 2>/dev/null || ulimit -p %[1]d; } && ", rl.nproc)
	}
	if rl.vmemKiB > 0 {
		s += fmt.Sprintf("ulimit -v %d && ", rl.vmemKiB)
	}
	return s
}

// planRlimits decides which limits fall to rlimits and reports, with the
// cgroup report, which limits hold and how. RLIMIT_NPROC counts the tasks
// of a uid in a user namespace: where the jail is a user namespace of its
// own (perSandboxNproc), that is the whole sandbox, PID 1 included, while
// PID 1 itself keeps no limit and so always has the threads it needs.
func planRlimits(l Limits, cgroupReport string, perSandboxNproc bool) (commandRlimits, string) {
	var rl commandRlimits
	held := []string{}
	if cgroupReport != "" {
		held = append(held, cgroupReport)
	}
	if l.Processes > 0 && !strings.Contains(cgroupReport, "processes") {
		if perSandboxNproc {
			rl.nproc = uint64(l.Processes)
			held = append(held, fmt.Sprintf("processes %d (rlimit per sandbox)", l.Processes))
		} else {
			held = append(held, "processes unbounded (no cgroup)")
		}
	}
	if l.Memory > 0 && !strings.Contains(cgroupReport, "memory") {
		rl.vmemKiB = uint64(l.Memory) / 1024
		held = append(held, fmt.Sprintf("memory %d bytes per process (rlimit, not per sandbox)", l.Memory))
	}
	if l.CPU > 0 && !strings.Contains(cgroupReport, "cpu") {
		held = append(held, "cpu unbounded (no cgroup)")
	}
	if len(held) == 0 {
		return rl, "none asked"
	}
	return rl, strings.Join(held, ", ")
}
