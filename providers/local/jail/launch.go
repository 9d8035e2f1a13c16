package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An unconfigured PID 1: started with its namespaces, waiting on its
// control channel for the configuration that makes it a given sandbox.
// Starting the server binary (its runtime and every package's init) is most
// of a jail's start, so Start keeps one such PID 1 ready for the next jail.
type launched struct {
	cmd     *exec.Cmd
	ctl     *net.UnixConn // SOCK_SEQPACKET to PID 1's fdControl
	level   Level
	network bool
	hostUID int // the sandbox's root on the host
	waited  chan struct{}
}

// launch starts a PID 1 for a jail of the given level and network.
func launch(level Level, network bool) (*launched, error) {
	// PID 1 starts from a descriptor of the server binary: a root server's
	// binary may sit where the sandbox's unprivileged uid cannot reach.
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("jail: finding the server binary: %w", err)
	}
	exeFile, err := os.Open(exe)
	if err != nil {
		return nil, fmt.Errorf("jail: opening the server binary: %w", err)
	}
	defer exeFile.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("jail: control channel: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "control"), os.NewFile(uintptr(pair[1]), "control")
	defer theirs.Close()
	ctl, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, fmt.Errorf("jail: control channel: %w", err)
	}

	l := &launched{ctl: ctl.(*net.UnixConn), level: level, network: network, hostUID: os.Geteuid(), waited: make(chan struct{})}
	hostGID := os.Getegid()
	reaper, err := sharedReaper()
	if err != nil {
		l.ctl.Close()
		return nil, err
	}
	extra := []*os.File{theirs, exeFile, reaper} // fdControl, fdExe, fdReaper
	if os.Geteuid() == 0 {
		// The sandbox's root is an unprivileged uid of its own on the host.
		lock, uid, err := allocateUID()
		if err != nil {
			l.ctl.Close()
			return nil, err
		}
		defer lock.Close() // PID 1 holds its own copy while it lives
		l.hostUID, hostGID = uid, uid
		extra = append(extra, lock) // fdLock
	}
	attr := &syscall.SysProcAttr{Setsid: true}
	if level == LevelNamespaces {
		// PID 1 is root in a user namespace of its own, an unprivileged uid
		// on the host; the other namespaces belong to that one.
		attr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
		if !network {
			attr.Cloneflags |= syscall.CLONE_NEWNET
		}
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: l.hostUID, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostGID, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}
	}
	cmd := exec.Command(exe, initArg)
	cmd.Path = fmt.Sprintf("/proc/self/fd/%d", fdExe)
	cmd.Env = []string{"PATH=" + defaultPath} // never the server's environment
	cmd.Dir = "/"
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = attr
	if attr.Cloneflags&syscall.CLONE_NEWUSER != 0 {
		whileDumpable(func() { err = cmd.Start() })
	} else {
		err = cmd.Start()
	}
	if err != nil {
		l.ctl.Close()
		if level == LevelNamespaces {
			return nil, fmt.Errorf("jail: creating the sandbox's namespaces: %w (use the docker provider, or a lower isolation level)", err)
		}
		return nil, fmt.Errorf("jail: starting the sandbox: %w", err)
	}
	l.cmd = cmd
	go func() { cmd.Wait(); close(l.waited) }()
	return l, nil
}

// next reads PID 1's next report.
func (l *launched) next() (readyReport, error) {
	buf := make([]byte, 64<<10)
	var r readyReport
	n, _, _, _, err := l.ctl.ReadMsgUnix(buf, nil)
	if err == nil && n == 0 {
		err = errors.New("PID 1 hung up")
	}
	if err == nil {
		err = json.Unmarshal(buf[:n], &r)
	}
	return r, err
}

// alive says whether the PID 1 is still waiting for its configuration.
func (l *launched) alive() bool {
	select {
	case <-l.waited:
		return false
	default:
		return true
	}
}

// kill ends an unused or failed PID 1.
func (l *launched) kill() {
	l.cmd.Process.Kill()
	l.ctl.Close()
	select {
	case <-l.waited:
	case <-time.After(10 * time.Second):
	}
}

// spares holds one ready PID 1 per network setting.
var spares = struct {
	sync.Mutex
	byNetwork map[bool]*launched
	filling   map[bool]bool
}{byNetwork: map[bool]*launched{}, filling: map[bool]bool{}}

// takeOrLaunch returns the spare PID 1 for a jail with namespaces, or a
// new one. Call refill once the jail is up: the next spare starts then, so
// that it does not take the machine from the jail starting now.
func takeOrLaunch(level Level, network bool) (l *launched, refill func(), err error) {
	if level != LevelNamespaces {
		l, err = launch(level, network)
		return l, func() {}, err
	}
	spares.Lock()
	l = spares.byNetwork[network]
	delete(spares.byNetwork, network)
	spares.Unlock()
	refill = func() { refillSpare(level, network) }
	if l != nil && l.alive() {
		return l, refill, nil
	}
	l, err = launch(level, network)
	return l, refill, err
}

// refillSpare starts the next spare PID 1 in the background, unless there
// is one or one is on its way.
func refillSpare(level Level, network bool) {
	spares.Lock()
	if spares.byNetwork[network] != nil || spares.filling[network] {
		spares.Unlock()
		return
	}
	spares.filling[network] = true
	spares.Unlock()
	go func() {
		// A spare counts once its runtime is up and waiting.
		next, err := launch(level, network)
		if err == nil {
			if r, rerr := next.next(); rerr != nil || !r.Waiting {
				next.kill()
				err = errors.New("spare did not come up")
			}
		}
		spares.Lock()
		defer spares.Unlock()
		spares.filling[network] = false
		if err == nil {
			spares.byNetwork[network] = next
		}
	}()
}
