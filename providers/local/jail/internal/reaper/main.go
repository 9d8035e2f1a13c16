// Command mcp-sandbox-reaper is what a jail's PID 1 starts commands under:
// a child subreaper, so that whatever a command starts comes back to it when
// its parent dies, however it detached (setsid, a double fork, a cleared
// environment). While the command runs, PID 1 finds its whole tree below
// the reaper and can end all of it.
//
// PID 1 starts it ahead of the commands, from a sealed in-memory copy, so
// that no command waits for a program to start: it reads one command at a
// time from its channel (fd 4), runs it and reports its exit. When the
// command leaves nothing running, the reaper waits for the next one; when
// it leaves something in the background, the reaper exits, so that what is
// left goes on under PID 1, as it would on any machine.
//
// The channel speaks in packets. In: the command, NUL-separated fields
// (which of stdin, stdout, stderr follow as descriptors, "0" to "7"; the
// working directory; argc; argv; the environment), with the descriptors.
// Out: "S"+pid started (0: it could not be, its exit follows); "E"+message, refused (nothing ran, ask again); "T"+what,
// tampered with (the reaper exits, unused); "X"+code+" "+"1" when it may
// serve again ("0": it exits).
package main

import (
	"bytes"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER from linux/prctl.h
	prSetDumpable       = 4  // PR_SET_DUMPABLE
	ioprioWhoProcess    = 1  // IOPRIO_WHO_PROCESS
	rlimits             = 16 // RLIM_NLIMITS
)

// Descriptors PID 1 gives us: the in-memory copy we were started from (no
// business of the commands'), and the channel.
const (
	fdSelf    = 3
	fdChannel = 4
)

// maxPacket matches PID 1's bound on a request.
const maxPacket = 1 << 20

// Priorities and CPUs are a thread's, and a command inherits those of the
// thread that forks it: ours is always the main thread, whose id is our
// pid, the one another process would change. One goroutine does all the
// work: a second P would only wake threads for nothing.
func init() {
	runtime.LockOSThread()
	runtime.GOMAXPROCS(1)
}

func main() {
	syscall.Close(fdSelf)
	syscall.CloseOnExec(fdChannel)
	// Commands run as our uid: non-dumpable, none of them may trace us,
	// read our memory or take our descriptors (that needs CAP_SYS_PTRACE,
	// which no command has).
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); e != 0 {
		fail("PR_SET_DUMPABLE: " + e.Error())
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		fail("PR_SET_CHILD_SUBREAPER: " + e.Error())
	}
	// Signals PID 1 sends the command's process group reach the command
	// directly; the reaper only outlives them. (Caught, not ignored: an
	// ignored signal would stay ignored in the command.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTSTP,
		syscall.SIGTTIN, syscall.SIGTTOU)
	start := inherited()
	buf := make([]byte, maxPacket)
	oob := make([]byte, syscall.CmsgSpace(3*4))
	for {
		n, oobn, _, _, err := syscall.Recvmsg(fdChannel, buf, oob, syscall.MSG_CMSG_CLOEXEC)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n == 0 {
			os.Exit(0) // PID 1 let us go
		}
		fds := rights(oob[:oobn])
		if what := start.changed(); what != "" {
			// Set from outside since we started, it would pass on to
			// every command from now on: PID 1 uses another reaper.
			reply("T" + what)
			os.Exit(0)
		}
		code, reusable := run(buf[:n], fds)
		for _, fd := range fds {
			syscall.Close(fd)
		}
		if code >= 0 {
			reply("X" + strconv.Itoa(code) + map[bool]string{true: " 1", false: " 0"}[reusable])
		}
		if !reusable {
			os.Exit(0)
		}
	}
}

// run starts one command and waits for it; code -1 means refused (the
// reply is sent). Its exit status is 128+signal when a signal ended it.
func run(packet []byte, fds []int) (code int, reusable bool) {
	f := strings.Split(string(packet), "\x00")
	if len(f) < 4 {
		reply("Emalformed request")
		return -1, true
	}
	mask, _ := strconv.Atoi(f[0])
	argc, err := strconv.Atoi(f[2])
	if err != nil || argc < 1 || 3+argc > len(f) {
		reply("Emalformed request")
		return -1, true
	}
	argv, env := f[3:3+argc], f[3+argc:]
	// Our own 0, 1 and 2 are the null device: they stand in for the
	// streams the request leaves out.
	files := []uintptr{0, 1, 2}
	next := 0
	for i := range files {
		if mask&(1<<i) != 0 {
			if next >= len(fds) {
				reply("Ethe command's standard streams did not arrive")
				return -1, true
			}
			files[i] = uintptr(fds[next])
			next++
		}
	}
	if err := syscall.Chdir(f[1]); err != nil {
		reply("Echdir " + f[1] + ": " + err.Error())
		return -1, true
	}
	defer syscall.Chdir("/")
	path := lookPath(argv[0], env)
	attr := &syscall.ProcAttr{Env: env, Files: files, Sys: &syscall.SysProcAttr{}}
	pid, err := syscall.ForkExec(path, argv, attr)
	// At the sandbox's process limit, processes a kill just ended leave
	// only as they are reaped: wait a moment for room (as PID 1 does).
	for pause, waited := time.Millisecond, time.Duration(0); err == syscall.EAGAIN && waited < fullWait; pause = min(2*pause, 100*time.Millisecond) {
		time.Sleep(pause)
		waited += pause
		pid, err = syscall.ForkExec(path, argv, attr)
	}
	if err == syscall.EAGAIN {
		reply("Ethe sandbox is at its process limit (" + err.Error() + "): end some of its processes (process_list, process_kill) and try again")
		return -1, true
	}
	if err == syscall.E2BIG {
		// Nothing ran, and no shell would run it either: a refusal the
		// caller can act on (put the script in a file), not an exit status.
		reply("E" + path + ": " + err.Error())
		return -1, true
	}
	reply("S" + strconv.Itoa(pid))
	if err != nil {
		syscall.Write(int(files[2]), []byte("mcp-sandbox-reaper: "+path+": "+err.Error()+"\n"))
		if err == syscall.ENOENT {
			return 127, true
		}
		return 126, true
	}
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 1, false // no children at all: cannot happen while ours lives
		}
		if got != pid || !(ws.Exited() || ws.Signaled()) {
			continue // an orphan that came to us: reaped
		}
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return code, childless()
	}
}

// childless reaps what has ended and says whether nothing is left below
// us: then nothing can come to us any more, and the next command starts
// with a tree of its own.
func childless() bool {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case err == syscall.EINTR || got > 0:
		case err == syscall.ECHILD:
			return true
		default:
			return false
		}
	}
}

// state is what another process of our uid may change in us from outside
// and every command would inherit: limits, priorities, CPUs, the OOM score.
type state struct {
	limits            [rlimits]syscall.Rlimit
	nice, policy, iop int
	cpus              [128]byte
	oom, autogroup    string
}

func inherited() *state {
	s := &state{}
	for r := range s.limits {
		syscall.Getrlimit(r, &s.limits[r])
	}
	s.nice, _ = syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	p, _, _ := syscall.RawSyscall(syscall.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
	s.policy = int(p)
	syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, uintptr(len(s.cpus)), uintptr(unsafe.Pointer(&s.cpus[0])))
	io, _, _ := syscall.RawSyscall(syscall.SYS_IOPRIO_GET, ioprioWhoProcess, 0, 0)
	s.iop = int(io)
	s.oom = readSelf("oom_score_adj")
	s.autogroup = readSelf("autogroup")
	return s
}

// changed names what differs from what we started with ("" if nothing).
func (s *state) changed() string {
	now := inherited()
	switch {
	case now.limits != s.limits:
		return "resource limits"
	case now.nice != s.nice || now.policy != s.policy || now.iop != s.iop || now.autogroup != s.autogroup:
		return "scheduling priority"
	case !bytes.Equal(now.cpus[:], s.cpus[:]):
		return "CPU affinity"
	case now.oom != s.oom:
		return "OOM score"
	}
	return ""
}

func readSelf(name string) string {
	b, _ := os.ReadFile("/proc/self/" + name)
	return string(b)
}

func reply(msg string) {
	for {
		if _, err := syscall.Write(fdChannel, []byte(msg)); err != syscall.EINTR {
			return
		}
	}
}

// rights lists the descriptors an SCM_RIGHTS message carried.
func rights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		got, err := syscall.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func fail(msg string) {
	os.Stderr.WriteString("mcp-sandbox-reaper: " + msg + "\n")
	os.Exit(126)
}

// lookPath finds a command name without a slash in the command's $PATH,
// as a shell would.
func lookPath(name string, env []string) string {
	if strings.Contains(name, "/") {
		return name
	}
	dirs := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			dirs = v
		}
	}
	for _, dir := range strings.Split(dirs, ":") {
		if dir == "" {
			continue
		}
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// fullWait is how long a start waits for a sandbox at its process limit:
// PID 1's wait (fullWait in ../../init.go).
const fullWait = 3 * time.Second
