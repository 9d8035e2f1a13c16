package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// serve answers the server until it asks PID 1 to stop.
func (p *pid1) serve(ln *net.UnixListener) {
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: retry
			continue
		}
		go p.handle(conn)
	}
}

// packets recycles request buffers: a fresh one per request is cleared
// page by page, which cost PID 1 more than the command's own fork.
var packets = sync.Pool{New: func() any { b := make([]byte, maxPacket); return &b }}

func (p *pid1) handle(conn *net.UnixConn) {
	defer conn.Close()
	buf := packets.Get().(*[]byte)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(*buf, oob)
	if err != nil {
		packets.Put(buf)
		return
	}
	files := receivedFiles(oob[:oobn])
	defer closeAll(files)
	var req request
	err = json.Unmarshal((*buf)[:n], &req)
	packets.Put(buf) // req holds copies
	if err != nil {
		send(conn, reply{Error: "malformed request: " + err.Error()})
		return
	}
	switch req.Op {
	case opInfo:
		// With our credentials attached the kernel tells the server our
		// pid as it sees it (we are 1 only in our own namespace).
		cred := unix.UnixCredentials(&unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
		conn.WriteMsgUnix(mustJSON(reply{Info: &infoBody{Isolation: p.iso, Config: p.cfg}}), cred, nil)
	case opShutdown:
		p.shutdown()
	case opRun:
		p.run(conn, req, files)
	case opSignal:
		p.signalByPid(conn, req)
	default:
		send(conn, reply{Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

// run starts one command and reports its exit. On the same connection the
// server may signal the command; a kill request, or the server hanging up,
// kills the command and everything it started.
func (p *pid1) run(conn *net.UnixConn, req request, files []*os.File) {
	var stdio [3]*os.File
	var fds []int
	next := 0
	for i, present := range req.Stdio {
		if present {
			if next >= len(files) {
				send(conn, reply{Error: "the command's standard streams did not arrive"})
				return
			}
			stdio[i] = files[next]
			fds = append(fds, int(files[next].Fd()))
			next++
		}
	}
	argv, env, cwd, err := p.prepare(req)
	if err != nil {
		send(conn, reply{Error: err.Error()})
		return
	}
	p.reaperMu.Lock()
	memfd := p.reaper
	p.reaperMu.Unlock()
	if memfd != nil {
		packet, err := reaperRequest(argv, env, cwd, req.Stdio)
		if err != nil {
			send(conn, reply{Error: err.Error()})
			return
		}
		r, pid, err := p.runUnderReaper(memfd, packet, fds)
		if err != nil && errors.Is(err, syscall.EACCES) {
			// The machine forbids running from memory (vm.memfd_noexec): do
			// without the reaper from now on.
			p.reaperMu.Lock()
			p.reaper = nil
			p.reaperMu.Unlock()
		} else if err != nil {
			send(conn, reply{Error: err.Error()})
			return
		} else {
			closeAll(files) // the command holds its own copies now
			p.runReaped(conn, r, pid, memfd)
			return
		}
	}
	p.runDirect(conn, p.directCommand(argv, env, cwd, stdio), files)
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// runReaped follows a command a reaper started until it exits. The
// server knows it by its own pid: the reaper's may serve later commands.
func (p *pid1) runReaped(conn *net.UnixConn, r *reaperProc, pid int, memfd *os.File) {
	c := &command{pid: r.pid, id: pid, reaped: true}
	if pid == 0 {
		c.id = r.pid // it never ran: nothing to signal but its exit
	}
	r.setCommand(c)
	p.track(c, true)
	send(conn, reply{Started: true, Pid: c.id})
	go c.follow(conn)
	code, reusable := r.exit()
	c.mu.Lock()
	c.exited = true
	c.mu.Unlock()
	r.setCommand(nil)
	p.track(c, false)
	if reusable {
		p.keepReaper(r)
	} else {
		r.ch.Close()
		p.refillReaper(memfd)
	}
	send(conn, reply{Exited: true, Code: code})
}

// runDirect starts a command without a reaper and follows it until it
// exits.
func (p *pid1) runDirect(conn *net.UnixConn, cmd *exec.Cmd, files []*os.File) {
	done := make(chan spawned, 1)
	p.spawn <- spawnReq{cmd: cmd, done: done}
	got := <-done
	if got.err != nil {
		send(conn, reply{Error: got.err.Error()})
		return
	}
	cmd = got.cmd
	closeAll(files)
	c := &command{pid: cmd.Process.Pid, id: cmd.Process.Pid, ownNS: cmd.SysProcAttr.Cloneflags&syscall.CLONE_NEWPID != 0}
	p.track(c, true)
	send(conn, reply{Started: true, Pid: c.id})
	go c.follow(conn)
	// Wait for the exit without reaping, so that no signal sent from here
	// on can reach a process that reused the command's pid.
	var info unix.Siginfo
	for unix.Waitid(unix.P_PID, c.pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
	c.mu.Lock()
	c.exited = true
	c.mu.Unlock()
	cmd.Wait()
	p.track(c, false)
	code := -1 // reaped by someone else: no status to tell
	if cmd.ProcessState != nil {
		code = exitCode(cmd.ProcessState)
	}
	if c.emulated != 0 {
		code = 128 + int(c.emulated)
	}
	send(conn, reply{Exited: true, Code: code})
}

// follow carries out the server's signals for a running command; a kill,
// or the server hanging up, ends it with everything it started.
func (c *command) follow(conn *net.UnixConn) {
	b := make([]byte, 512)
	for {
		n, _, _, _, err := conn.ReadMsgUnix(b, nil)
		var r request
		if err != nil || n == 0 || json.Unmarshal(b[:n], &r) != nil || r.Op != opSignal {
			c.signal(syscall.SIGKILL)
			return
		}
		c.signal(syscall.Signal(r.Signal))
	}
}

// signalByPid signals a running command named by the pid Started reported:
// how a server that does not hold the command's connection reaches it.
func (p *pid1) signalByPid(conn *net.UnixConn, req request) {
	p.mu.Lock()
	c := p.running[req.Pid]
	p.mu.Unlock()
	if c == nil {
		send(conn, reply{Error: fmt.Sprintf("no command with pid %d is running", req.Pid)})
		return
	}
	c.signal(syscall.Signal(req.Signal))
	send(conn, reply{})
}

// command is one running command of the jail.
type command struct {
	pid    int  // the reaper's, where there is one; it leads the command's session and group
	id     int  // the command's own pid, by which the server names it
	reaped bool // started under the reaper
	ownNS  bool // the init of a pid namespace of its own

	mu       sync.Mutex
	exited   bool           // reaped or about to be: signal nothing more
	emulated syscall.Signal // the default action PID 1 carried out for it
}

// signal sends sig to the command's process group, as a terminal would;
// SIGKILL ends the command with everything it started, however it
// detached. Where the command is the init of its own pid namespace, the
// kernel drops signals it has no handler for (only SIGKILL and SIGSTOP are
// forced), so a TERM would leave `sleep 100` running: PID 1 then carries
// out the default action itself, with a SIGKILL, and the exit code says sig.
func (c *command) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exited || sig <= 0 {
		return
	}
	switch {
	case sig == syscall.SIGKILL && c.reaped:
		killTree(c.pid)
	case sig == syscall.SIGKILL:
		syscall.Kill(-c.pid, sig) // the group; a namespace's init takes the rest with it
		syscall.Kill(c.pid, sig)
	default:
		syscall.Kill(-c.pid, sig)
		if c.ownNS && terminatesByDefault(sig) && !takes(c.pid, sig) {
			c.emulated = sig
			syscall.Kill(c.pid, syscall.SIGKILL)
		}
	}
}

// terminatesByDefault lists the signals whose default action ends a process.
func terminatesByDefault(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGSTOP, syscall.SIGTSTP,
		syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGURG, syscall.SIGWINCH:
		return false
	}
	return true
}

// takes says whether a process catches or ignores sig, from the masks the
// kernel shows in /proc/<pid>/status.
func takes(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	bit := uint64(1) << (uint(sig) - 1)
	for _, line := range strings.Split(string(b), "\n") {
		name, hex, ok := strings.Cut(line, ":\t")
		if !ok || (name != "SigIgn" && name != "SigCgt") {
			continue
		}
		if mask, err := strconv.ParseUint(hex, 16, 64); err == nil && mask&bit != 0 {
			return true
		}
	}
	return false
}

// shutdown ends PID 1. With namespaces the kernel kills everything in the
// jail when its init exits; without, PID 1 (a subreaper) kills all its
// descendants first.
func (p *pid1) shutdown() {
	if p.cfg.Level != LevelNamespaces {
		for range 100 {
			kids := children()
			if len(kids) == 0 {
				break
			}
			for _, k := range kids {
				syscall.Kill(k, syscall.SIGKILL)
			}
			var ws syscall.WaitStatus
			for {
				pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
	}
	os.Exit(0)
}

// track records the commands PID 1 waits for itself, so that the orphan
// reaper leaves them to their waiters.
func (p *pid1) track(c *command, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.running[c.id] = c
	} else {
		delete(p.running, c.id)
	}
}

// reapOrphans collects the exit of every orphan that came to PID 1 as the
// subreaper (there are none where each command is a pid namespace's init).
func (p *pid1) reapOrphans() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	for range sig {
		for _, pid := range children() {
			p.mu.Lock()
			mine := p.running[pid] != nil || p.reapers[pid]
			p.mu.Unlock()
			if !mine {
				var ws syscall.WaitStatus
				syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			}
		}
	}
}

// children lists PID 1's children from every thread's children file.
func children() []int {
	var out []int
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func send(conn *net.UnixConn, r reply) {
	conn.WriteMsgUnix(mustJSON(r), nil, nil)
}

// receivedFiles turns SCM_RIGHTS messages into files.
func receivedFiles(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "stdio"))
		}
	}
	return files
}
