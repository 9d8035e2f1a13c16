package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// initArg is the hidden argument that makes the server binary a jail's PID 1.
const initArg = "mcp-sandbox-jail-init"

// Descriptors PID 1 inherits.
const (
	fdControl = 3 // SOCK_SEQPACKET to the server: configuration in, report out
	fdExe     = 4 // the server binary, which PID 1 was started from
	fdReaper  = 5 // the sealed reaper (see reaper.go), or the null device
	fdLock    = 6 // under a root server: the lock on the sandbox's host uid
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// IsInit says whether the process was started as a jail's PID 1. main calls
// it first thing: if IsInit(os.Args) { os.Exit(jail.Main(os.Args)) }.
func IsInit(args []string) bool { return len(args) == 2 && args[1] == initArg }

// Main is a jail's PID 1: it builds the sandbox's file system, confines
// itself, reports to the server, then starts commands on request until the
// server ends it.
func Main(args []string) int {
	if !IsInit(args) {
		fmt.Fprintln(os.Stderr, "jail: Main is only for a jail's PID 1")
		return 2
	}
	// The memory and fds of PID 1 are no business of the sandbox.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// PID 1 only passes messages: on one P its goroutines hand work to
	// each other without waking threads, which halves its time per command.
	runtime.GOMAXPROCS(1)
	reserveThreads(spareThreads)
	unix.Close(fdExe)
	// Inherited descriptors are not close-on-exec: commands must not get
	// the uid lock.
	unix.CloseOnExec(fdLock)
	unix.CloseOnExec(fdReaper)
	ctlFile := os.NewFile(fdControl, "control")
	c, err := net.FileConn(ctlFile)
	ctlFile.Close()
	if err != nil {
		return 1
	}
	ctl := c.(*net.UnixConn)
	defer ctl.Close()
	report := func(r readyReport) { ctl.WriteMsgUnix(mustJSON(r), nil, nil) }
	p := &pid1{spawn: make(chan spawnReq), tmp: "/tmp", running: map[int]*command{}, reapers: map[int]bool{}}
	root, rootErr := p.ahead()
	report(readyReport{Waiting: true})

	// Wait, started ahead, for the configuration that makes us a sandbox;
	// the server hanging up instead means we are not needed.
	buf := make([]byte, maxPacket)
	oob := make([]byte, unix.CmsgSpace(2*4))
	n, oobn, _, _, err := ctl.ReadMsgUnix(buf, oob)
	if err != nil || n == 0 {
		return 1
	}
	files := receivedFiles(oob[:oobn])
	var cfg initConfig
	if err := json.Unmarshal(buf[:n], &cfg); err != nil || len(files) < 1 || (cfg.Tree && len(files) < 2) {
		report(readyReport{Error: fmt.Sprintf("malformed configuration (%v, %d descriptors)", err, len(files))})
		return 1
	}
	tree := -1
	if cfg.Tree {
		tree = int(files[1].Fd())
	}
	if rootErr != nil {
		report(readyReport{Error: rootErr.Error()})
		return 1
	}
	if err := p.setUp(&cfg, root, tree); err != nil {
		report(readyReport{Error: err.Error()})
		return 1
	}
	ln, err := net.FileListener(files[0])
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		report(readyReport{Error: "control socket: " + err.Error()})
		return 1
	}
	report(readyReport{Isolation: p.iso})
	ctl.Close()
	p.refillReaper(p.reaper) // the first command's reaper
	p.serve(ln.(*net.UnixListener))
	return 0
}

// pid1 is the state of a running PID 1.
type pid1 struct {
	cfg   initConfig
	iso   Isolation
	spawn chan spawnReq // to the one thread that starts commands
	tmp   string        // TMPDIR for commands
	rl    commandRlimits
	// loopbackErr is why lo is down, if it is.
	loopbackErr error

	reaperMu sync.Mutex
	// reaper is the sealed copy reapers start from; nil: each command is
	// the init of a pid namespace of its own instead.
	reaper    *os.File
	spare     *reaperProc // idle, or on its way up
	refilling bool

	mu      sync.Mutex
	running map[int]*command // commands whose exit a request waits for
	reapers map[int]bool     // reapers alive, which PID 1 waits for itself
}

// ahead does what does not depend on the sandbox, while PID 1 waits for
// its configuration: a spare PID 1 has it done before a sandbox needs it.
func (p *pid1) ahead() (root string, err error) {
	// What commands leave behind comes to PID 1 (the namespace's init, or
	// the subreaper) once its parent is gone.
	go p.reapOrphans()
	// A command may signal PID 1; it goes on serving. (Caught, not
	// ignored: commands must not inherit ignored signals.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT,
		syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM)
	p.reaper = inheritedReaper()
	if os.Getpid() != 1 {
		return "", nil // no namespaces of our own
	}
	unix.Sethostname([]byte("sandbox"))
	// Up already where the jail shares the host's network, which is not
	// ours to change: setUp tells when a jail of its own needed it.
	p.loopbackErr = loopbackUp()
	return prepareRoot()
}

// setUp turns PID 1 into the given sandbox: file system, limits, Landlock.
func (p *pid1) setUp(cfg *initConfig, root string, tree int) error {
	p.cfg = *cfg
	p.iso = Isolation{Level: cfg.Level, Network: cfg.Network || cfg.Level != LevelNamespaces}
	if cfg.Level == LevelNamespaces {
		if root == "" {
			return fmt.Errorf("PID 1 has no namespaces of its own")
		}
		if !cfg.Network && p.loopbackErr != nil {
			return fmt.Errorf("bringing loopback up: %w", p.loopbackErr)
		}
		if err := finishRoot(root, cfg.Dir, tree); err != nil {
			return err
		}
	} else {
		// Without a mount namespace the sandbox sees its directory where it
		// is, and a private temporary directory inside it.
		p.tmp = cfg.Dir
		// Orphans of commands come to PID 1 instead of the host's init,
		// so that ending the jail can find them.
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	p.rl, p.iso.Limits = planRlimits(cfg.Limits, cfg.LimitsReport, cfg.Level == LevelNamespaces)

	// One locked thread confines itself with Landlock and starts every
	// command, so that all of them inherit its domain while the rest of
	// PID 1 (which only talks to the server) stays free to reap.
	errc := make(chan error, 1)
	go p.spawner(errc)
	if err := <-errc; err != nil {
		return err
	}
	if cfg.Level == LevelNone {
		p.iso.Landlock = 0
	}
	return nil
}

// spawnReq asks the spawner thread to start a command.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan spawned
}

// spawned is a start's outcome: the command as started (a retry starts a
// copy of the one asked for), or why it could not start.
type spawned struct {
	cmd *exec.Cmd
	err error
}

func (p *pid1) spawner(errc chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread dies with PID 1
	if p.cfg.Level != LevelNone {
		abi, err := confineThread(p.cfg.Level == LevelNamespaces, p.cfg.Dir)
		if err != nil {
			errc <- fmt.Errorf("landlock: %w", err)
			return
		}
		p.iso.Landlock = abi
		if abi == 0 && p.cfg.Level == LevelLandlock {
			errc <- fmt.Errorf("landlock is not available on this kernel")
			return
		}
	}
	if p.cfg.Level == LevelNamespaces {
		if err := dropCapabilities(); err != nil {
			errc <- err
			return
		}
	}
	errc <- nil
	for r := range p.spawn {
		cmd, err := startWhileFull(r.cmd)
		r.done <- spawned{cmd, err}
	}
}

// startWhileFull starts cmd, and again while the sandbox is at its
// process limit (EAGAIN), for up to fullWait: what a kill just ended (a
// fork bomb's thousands) leaves the pids cgroup only as it is reaped, and a
// command sent meanwhile would fail for nothing. Past that, the error says
// what is full.
func startWhileFull(cmd *exec.Cmd) (*exec.Cmd, error) {
	err := cmd.Start()
	for pause, waited := time.Millisecond, time.Duration(0); errors.Is(err, syscall.EAGAIN); pause = min(2*pause, 100*time.Millisecond) {
		if waited >= fullWait {
			return nil, fmt.Errorf("the sandbox is at its process limit (%w): end some of its processes (process_list, process_kill) and try again", err)
		}
		time.Sleep(pause)
		waited += pause
		// A Cmd starts once: the retry is a copy, with the same files.
		cmd = &exec.Cmd{Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Dir: cmd.Dir, Stdin: cmd.Stdin, Stdout: cmd.Stdout,
			Stderr: cmd.Stderr, ExtraFiles: cmd.ExtraFiles, SysProcAttr: cmd.SysProcAttr}
		err = cmd.Start()
	}
	return cmd, err
}

// fullWait is how long a start waits for a sandbox at its process limit.
const fullWait = 3 * time.Second

// prepare resolves a request into the argv, environment and working
// directory the command runs with.
func (p *pid1) prepare(req request) (argv, env []string, cwd string, err error) {
	if len(req.Argv) == 0 {
		return nil, nil, "", fmt.Errorf("empty command")
	}
	argv = req.Argv
	if script := p.rl.script(); script != "" {
		argv = append([]string{"/bin/sh", "-c", script + `exec "$@"`, "sh"}, argv...)
	}
	// Found here, so that a missing program is an error of the request
	// (PID 1's PATH is the commands' default).
	if !strings.Contains(argv[0], "/") {
		if _, err := exec.LookPath(argv[0]); err != nil {
			return nil, nil, "", err
		}
	}
	home := Workspace
	if p.cfg.Level != LevelNamespaces {
		home = p.cfg.Dir
	}
	cwd = req.Cwd
	if cwd == "" {
		cwd = home
	} else if !path.IsAbs(cwd) {
		cwd = path.Join(home, cwd)
	}
	env = append([]string{
		"PATH=" + defaultPath, "HOME=" + home, "TMPDIR=" + p.tmp,
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TERM=dumb", "SHELL=/bin/sh",
	}, req.Env...)
	return argv, env, cwd, nil
}

// commandAttr is how PID 1 starts a reaper, or a command without one: in
// a session of its own, killed if PID 1 dies, and never as root where
// there is no user namespace.
func (p *pid1) commandAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if p.cfg.Level != LevelNamespaces && p.cfg.CmdUID != 0 {
		// A root server without namespaces still never runs commands as root.
		attr.Credential = &syscall.Credential{Uid: uint32(p.cfg.CmdUID), Gid: uint32(p.cfg.CmdUID), NoSetGroups: true}
	}
	return attr
}

// directCommand is a command started without a reaper, where the machine
// forbids running one from memory.
func (p *pid1) directCommand(argv, env []string, cwd string, stdio [3]*os.File) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = cwd, env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.SysProcAttr = p.commandAttr()
	if p.cfg.Level == LevelNamespaces {
		// Each command is then the init of a pid namespace of its own:
		// killing it kills everything it started, however it detached
		// (but its background children end with it, too).
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	}
	return cmd
}

// spareThreads is how many idle OS threads PID 1 keeps beyond those it
// starts with. The sandbox's process limit counts threads too: a sandbox
// whose processes fill it leaves PID 1 no thread to create, and a Go
// runtime that cannot make one when it needs one aborts, taking the
// sandbox with it. Threads made at the start and left idle are reused
// by the runtime instead.
const spareThreads = 8

// reserveThreads makes n OS threads now and leaves them idle in the
// runtime: each of n goroutines holds a thread of its own (so the runtime
// starts one for each) until all have one, then lets it go.
func reserveThreads(n int) {
	var held, release sync.WaitGroup
	held.Add(n)
	release.Add(1)
	for range n {
		go func() {
			runtime.LockOSThread()
			held.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	held.Wait()
	release.Done()
}
