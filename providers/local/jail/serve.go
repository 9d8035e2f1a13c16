package jail

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
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

func (p *pid1) handle(conn *net.UnixConn) {
	defer conn.Close()
	buf := make([]byte, maxPacket)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	files := receivedFiles(oob[:oobn])
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var req request
	if err := json.Unmarshal(buf[:n], &req); err != nil {
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
	default:
		send(conn, reply{Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

// run starts one command and reports its exit; a kill request or the
// server hanging up kills the command and everything it started.
func (p *pid1) run(conn *net.UnixConn, req request, files []*os.File) {
	var stdio [3]*os.File
	next := 0
	for i, present := range req.Stdio {
		if present {
			if next >= len(files) {
				send(conn, reply{Error: "the command's standard streams did not arrive"})
				return
			}
			stdio[i] = files[next]
			next++
		}
	}
	cmd, err := p.command(req, stdio)
	if err != nil {
		send(conn, reply{Error: err.Error()})
		return
	}
	done := make(chan error, 1)
	p.spawn <- spawnReq{cmd: cmd, done: done}
	if err := <-done; err != nil {
		send(conn, reply{Error: err.Error()})
		return
	}
	// The command holds its own copies now.
	for _, f := range files {
		f.Close()
	}
	send(conn, reply{Started: true})

	go func() {
		// Any packet (a kill) or the server hanging up ends the command.
		b := make([]byte, 512)
		conn.ReadMsgUnix(b, nil)
		p.kill(cmd.Process.Pid)
	}()
	p.track(cmd.Process.Pid, true)
	err = cmd.Wait()
	p.track(cmd.Process.Pid, false)
	code := 0
	if err != nil {
		code = exitCode(cmd.ProcessState)
	}
	if p.cfg.Level != LevelNamespaces {
		// No pid namespace ended the rest with the command: end its session.
		p.kill(cmd.Process.Pid)
	}
	send(conn, reply{Exited: true, Code: code})
}

// kill ends a command and everything it started. In a jail with namespaces
// the command is the init of its own pid namespace, and the kernel ends the
// whole namespace with it. Without, the best left is its session.
func (p *pid1) kill(pid int) {
	if p.cfg.Level != LevelNamespaces {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
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
func (p *pid1) track(pid int, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.waited[pid] = true
	} else {
		delete(p.waited, pid)
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
			mine := p.waited[pid]
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
