// Package jail makes a local sandbox a set of Linux namespaces with the
// server binary itself as its PID 1, Landlock beneath, the network off by
// default and per-sandbox limits. The server starts PID 1 once per sandbox
// (Start) and asks it over a Unix socket to start each command (Run), so a
// command pays no namespace set-up.
//
// Inside, the sandbox directory is the only writable place, seen at
// /workspace; the host's system directories and the harmless parts of /etc
// are read-only; /proc, /dev and /tmp are the sandbox's own.
//
// Commands share the jail's pid namespace, as on any machine: $$ and $!
// mean the same in every command, and what a command leaves running in the
// background goes on after it. Each runs under a tiny child subreaper (the
// reaper), so that killing a command ends everything it started while it
// ran, however it detached; ending the jail ends everything in it.
package jail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Workspace is where the sandbox directory appears inside a jail.
const Workspace = "/workspace"

// Level is how much a jail isolates, strongest first.
type Level string

const (
	// LevelNamespaces: own user, pid, mount, ipc, uts (and network)
	// namespaces, Landlock beneath when the kernel has it.
	LevelNamespaces Level = "namespaces"
	// LevelLandlock: no namespaces (the machine forbids user namespaces);
	// Landlock alone confines files, ptrace and signals.
	LevelLandlock Level = "landlock"
	// LevelNone: no isolation at all; only ever chosen explicitly.
	LevelNone Level = "none"
)

func (l Level) rank() int {
	switch l {
	case LevelNamespaces:
		return 2
	case LevelLandlock:
		return 1
	}
	return 0
}

// Limits bound a whole sandbox. Zero means no limit.
type Limits struct {
	Processes int   // tasks alive at once
	Memory    int64 // bytes
	CPU       float64
}

// Isolation says what a jail got, for the operator's log and the model.
type Isolation struct {
	Level    Level  `json:"level"`
	Network  bool   `json:"network"`  // host networking on
	Landlock int    `json:"landlock"` // ABI in force, 0 when none
	Limits   string `json:"limits"`   // which limits hold and how, e.g. "processes 256 (cgroup v1 pids)"
}

// Options describe a jail to start.
type Options struct {
	// Dir is the host directory seen at /workspace. It must exist.
	Dir string
	// SocketDir holds the jail's control socket. It is created private
	// (0700) if missing and must never be reachable from a sandbox: keep it
	// outside Dir.
	SocketDir string
	// Network turns host networking on; off, the jail has loopback only.
	Network bool
	Limits  Limits
	// Level caps the isolation tried (empty: the strongest the machine has).
	// Start fails when the machine gives less than MinLevel.
	Level, MinLevel Level
}

// SocketName is the control socket's name inside Options.SocketDir.
const SocketName = "jail.sock"

// Jail is one running sandbox: its PID 1 and the socket to reach it.
type Jail struct {
	socket string
	pid    int // PID 1 as the server sees it
	iso    Isolation
	cfg    initConfig
	cmd    *exec.Cmd // nil when attached
	waited chan struct{}
}

// Isolation reports what the jail got.
func (j *Jail) Isolation() Isolation { return j.iso }

// Socket is the control socket's path, for Attach after a restart.
func (j *Jail) Socket() string { return j.socket }

// HostUID is the host uid that owns the sandbox directory's files: what a
// root server gives the files it writes there, so that commands can
// change them.
func (j *Jail) HostUID() int { return j.cfg.HostUID }

// Pid is the jail's PID 1 as the host sees it.
func (j *Jail) Pid() int { return j.pid }

// Start starts a jail's PID 1 and waits until it is ready for commands.
func Start(ctx context.Context, opts Options) (*Jail, Isolation, error) {
	hardenServer()
	if opts.Dir == "" || opts.SocketDir == "" {
		return nil, Isolation{}, errors.New("jail: Options.Dir and Options.SocketDir are required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, Isolation{}, fmt.Errorf("jail: sandbox directory: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, Isolation{}, fmt.Errorf("jail: sandbox directory %s must be an existing directory", dir)
	}
	level := opts.Level
	if level == "" {
		level = LevelNamespaces
	}
	if level == LevelNamespaces && !userNamespacesWork() {
		level = LevelLandlock
	}
	if level == LevelLandlock && landlockABI() == 0 {
		level = LevelNone
	}
	if level.rank() < opts.MinLevel.rank() {
		return nil, Isolation{}, fmt.Errorf("jail: this machine gives isolation %q, less than the %q asked for: allow user namespaces (sysctl user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns=0) or use the docker provider", level, opts.MinLevel)
	}
	if err := os.MkdirAll(opts.SocketDir, 0o700); err != nil {
		return nil, Isolation{}, fmt.Errorf("jail: socket directory: %w", err)
	}
	sock := filepath.Join(opts.SocketDir, SocketName)
	os.Remove(sock) // a stale socket from a PID 1 that is gone
	addr, done, err := socketAddr(sock)
	if err != nil {
		return nil, Isolation{}, fmt.Errorf("jail: control socket: %w", err)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: addr, Net: "unixpacket"})
	done()
	if err != nil {
		return nil, Isolation{}, fmt.Errorf("jail: control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	// Whoever may connect may run commands in the sandbox.
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, Isolation{}, fmt.Errorf("jail: control socket: %w", err)
	}
	lnFile, err := ln.File()
	ln.Close()
	if err != nil {
		return nil, Isolation{}, fmt.Errorf("jail: control socket: %w", err)
	}
	defer lnFile.Close()

	j := &Jail{socket: sock}
	j.cfg = initConfig{Dir: dir, Network: opts.Network, Limits: opts.Limits, Level: level}
	ok := false
	defer func() {
		if !ok {
			j.Close()
		}
	}()
	if err := j.start(ctx, lnFile); err != nil {
		return nil, Isolation{}, err
	}
	ok = true
	return j, j.iso, nil
}

// start takes a PID 1, moves it into its cgroups, hands it its
// configuration with the control socket (and, under a root server, the
// sandbox directory's mount) and waits for its report.
func (j *Jail) start(ctx context.Context, lnFile *os.File) error {
	l, refill, err := takeOrLaunch(j.cfg.Level, j.cfg.Network)
	if err != nil {
		return err
	}
	defer refill()
	j.cmd, j.pid, j.waited = l.cmd, l.cmd.Process.Pid, l.waited
	defer l.ctl.Close()
	j.cfg.HostUID = l.hostUID
	if j.cfg.Level == LevelNone {
		// No isolation means none: commands run as the server's user.
		j.cfg.HostUID = os.Geteuid()
	}
	rights := []int{int(lnFile.Fd())}
	if os.Geteuid() == 0 && j.cfg.Level != LevelNone {
		if j.cfg.Level != LevelNamespaces {
			// Commands see the host's tree: they must be able to reach it.
			if err := reachable(j.cfg.Dir); err != nil {
				return err
			}
			j.cfg.CmdUID = l.hostUID
		}
		if err := chownTree(j.cfg.Dir, l.hostUID); err != nil {
			return fmt.Errorf("jail: giving %s to the sandbox's uid %d: %w", j.cfg.Dir, l.hostUID, err)
		}
		if j.cfg.Level == LevelNamespaces {
			// PID 1, unprivileged on the host, may not reach the directory
			// by its path: it gets a copy of its mount instead.
			fd, err := unix.OpenTree(unix.AT_FDCWD, j.cfg.Dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
			if err != nil {
				return fmt.Errorf("jail: taking the mount of %s: %w (a kernel from 5.2 on is needed)", j.cfg.Dir, err)
			}
			defer unix.Close(fd)
			rights = append(rights, fd)
			j.cfg.Tree = true
		}
	}
	j.cfg.Cgroups, j.cfg.LimitsReport = applyLimits(j.pid, j.cfg.Limits)
	if _, _, err := l.ctl.WriteMsgUnix(mustJSON(j.cfg), unix.UnixRights(rights...), nil); err != nil {
		return fmt.Errorf("jail: configuring PID 1: %w", err)
	}

	done := make(chan error, 1)
	var ready readyReport
	go func() {
		r, err := l.next()
		if err == nil && r.Waiting {
			r, err = l.next()
		}
		ready = r
		done <- err
	}()
	select {
	case <-ctx.Done():
		return fmt.Errorf("jail: waiting for PID 1: %w", ctx.Err())
	case err := <-done:
		if err != nil {
			return fmt.Errorf("jail: PID 1 ended before it was ready (%v)", err)
		}
		if ready.Error != "" {
			return fmt.Errorf("jail: setting the sandbox up: %s", ready.Error)
		}
		j.iso = ready.Isolation
	}
	return nil
}

// Attach reaches a live jail through its control socket, for a server that
// restarted while its sandboxes kept running.
func Attach(socket string) (*Jail, error) {
	conn, err := dial(socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	pid, info, err := describe(conn)
	if err != nil {
		return nil, fmt.Errorf("jail: attaching to %s: %w", socket, err)
	}
	return &Jail{socket: socket, pid: pid, iso: info.Isolation, cfg: info.Config}, nil
}

// describe asks PID 1 for its description and learns its host pid from the
// credentials the kernel vouches for.
func describe(conn *net.UnixConn) (int, *infoBody, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, nil, err
	}
	raw.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if err != nil {
		return 0, nil, err
	}
	if _, _, err := conn.WriteMsgUnix(mustJSON(request{Op: opInfo}), nil, nil); err != nil {
		return 0, nil, err
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return 0, nil, err
	}
	var r reply
	if err := json.Unmarshal(buf[:n], &r); err != nil || r.Info == nil {
		return 0, nil, fmt.Errorf("PID 1 sent no description (%v)", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return 0, nil, errors.New("PID 1 sent no credentials")
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		return 0, nil, err
	}
	return int(cred.Pid), r.Info, nil
}

// Close ends PID 1, which ends every process in the jail however it
// detached, then removes the jail's cgroups and socket.
func (j *Jail) Close() error {
	if j.iso.Level != LevelNamespaces && j.pid > 0 {
		// Without a pid namespace only PID 1 knows every descendant.
		if err := j.shutdown(); err != nil {
			return err
		}
	}
	if j.cmd != nil {
		if j.cmd.Process != nil {
			j.cmd.Process.Kill()
			select {
			case <-j.waited:
			case <-time.After(10 * time.Second):
				return fmt.Errorf("jail: PID 1 (%d) did not end after SIGKILL", j.pid)
			}
		}
	} else if j.pid > 0 {
		if err := j.shutdown(); err != nil {
			return err
		}
	}
	os.Remove(j.socket)
	return removeCgroups(j.cfg.Cgroups)
}

// shutdown asks PID 1 to end the jail (the socket proves it is our jail,
// not a reused pid) and waits until it has.
func (j *Jail) shutdown() error {
	conn, err := dial(j.socket)
	if err != nil {
		return nil // gone already
	}
	pidfd, perr := unix.PidfdOpen(j.pid, 0)
	conn.WriteMsgUnix(mustJSON(request{Op: opShutdown}), nil, nil)
	conn.Close()
	if perr != nil {
		return nil
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0)/time.Millisecond))
		if err == unix.EINTR && time.Now().Before(deadline) {
			continue // the runtime's preemption signal, not an answer
		}
		if n != 1 {
			return fmt.Errorf("jail: PID 1 (%d) did not stop when asked", j.pid)
		}
		return nil
	}
}

// reachable checks that an unprivileged uid can reach dir on the host.
func reachable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("jail: without user namespaces the sandbox's uid must reach %s, but %s is not searchable by others: chmod o+x %s, or allow user namespaces", dir, d, d)
		}
		if d == "/" {
			return nil
		}
	}
}

var dumpableMu sync.Mutex

// whileDumpable runs f with the server dumpable again. An unprivileged
// server writes a new user namespace's uid_map under /proc/<child>, which
// the child (still a copy of the server until it execs) owns only when
// dumpable. The sandboxes cannot use the window: their Landlock domain
// forbids ptrace of anything outside it.
func whileDumpable(f func()) {
	dumpableMu.Lock()
	defer dumpableMu.Unlock()
	was, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if was == 0 && os.Geteuid() != 0 {
		unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
		defer unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	}
	f()
}

// hardenServer makes the server non-dumpable so that no process of the
// same uid, sandboxed or not, reads its memory, environment or fds.
func hardenServer() {
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}

// Available returns the level of isolation a jail gets on this machine when
// want is asked for (empty: the strongest there is). It fails when the
// machine gives less than an explicit want, and when it gives no isolation
// at all and none was not asked for: none is never chosen silently.
func Available(want Level) (Level, error) {
	got := LevelNamespaces
	if !userNamespacesWork() {
		got = LevelLandlock
	}
	if got == LevelLandlock && landlockABI() == 0 {
		got = LevelNone
	}
	switch {
	case want == "" && got == LevelNone:
		return "", errors.New("this machine gives local sandboxes no isolation (no user namespaces, no Landlock): use the docker provider, allow user namespaces (sysctl kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0), or choose --local-isolation none to run commands unconfined")
	case want == "":
		return got, nil
	case want.rank() > got.rank():
		return "", fmt.Errorf("local isolation %q was asked for, but this machine gives at most %q: allow user namespaces (sysctl kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0), choose a lower --local-isolation, or use the docker provider", want, got)
	}
	return want, nil
}
