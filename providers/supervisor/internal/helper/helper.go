// Package helper is the supervisor the driver copies into a sandbox where it
// can: a small static program that runs one process as the shell supervisor
// does (the same files under its directory, see ../../scripts.go), and in
// addition is a child subreaper. Whatever the command starts comes back to
// it when its parent dies, however it detached (setsid, a new process group,
// a cleared environment, a double fork), so a kill finds every descendant
// by walking /proc from the helper down, and ends them all.
package helper

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from linux/prctl.h.
const prSetChildSubreaper = 36

// Main runs the helper: "check" prints the SHA-256 of its own binary (the
// driver's proof that the upload arrived whole and runs), "sup DIR"
// supervises the process whose spec is in DIR, "hold" keeps its fd 3 open
// (the write end of a stdin FIFO) until it is killed; "start" and "run" are
// the start and run scripts done natively (native.go), "serve" a channel
// for the driver's commands (serve.go), "exec ..." runs a command in the
// foreground (see runExec), "stat", "lstat" and "place" are a driver's
// file checks (files.go).
func Main(args []string) int {
	if len(args) == 0 {
		os.Stderr.WriteString("usage: mcp-sandbox-supervisor check | sup DIR | spare | hold | start ... | run ... | serve [-enc b64] | exec ... | stat PATH | lstat PATH | place TMP TARGET SIZE MODE\n")
		return 2
	}
	switch args[0] {
	case "check":
		f, err := os.Open("/proc/self/exe")
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 1
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 1
		}
		os.Stdout.WriteString(hex.EncodeToString(h.Sum(nil)) + "\n")
		return 0
	case "exec":
		return runExec(args[1:])
	case "serve":
		return serveMain(args[1:])
	case "stat", "lstat", "place":
		code, _ := fileOp(args[0], "", args[1:], os.Stdout, os.Stderr)
		return code
	case "start":
		return startMain(args[1:], os.Stdin, os.Stdout, nil)
	case "run":
		return runMain(args[1:], os.Stdin, os.Stdout, nil)
	case "hold":
		time.Sleep(1<<63 - 1)
		return 0
	case "sup":
		if len(args) != 2 {
			return 2
		}
		return supMain(args[1], 0)
	case "spare":
		return spareMain()
	}
	return 2
}

// supMain supervises the process whose spec is in dir, telling of its
// progress on the file descriptor told (0: none).
func supMain(dir string, told int) int {
	s := &sup{dir: dir, told: told}
	err := takeKills(func() *sup { return s })
	if err == nil {
		err = s.prepare()
	}
	if err != nil {
		os.WriteFile(s.dir+"/fail", []byte(err.Error()+"\n"), 0o600)
		return 1
	}
	return s.supervise()
}

// supervise runs the prepared supervisor, its dir set.
func (s *sup) supervise() int {
	if err := s.run(); err != nil {
		os.WriteFile(s.dir+"/fail", []byte(err.Error()+"\n"), 0o600)
		s.tell()
		return 1
	}
	return 0
}

type sup struct {
	dir   string
	self  int
	cmd   int // the command's pid, its process group and session
	moved atomic.Int64
	// waiting counts copiers holding a segment for a slow follower: their
	// pipes are not quiet, only unread.
	waiting atomic.Int32
	killing sync.Mutex
	// selfStart and pipes (each stream's read and write ends) are made
	// by prepare.
	selfStart string
	pipes     [2][2]*os.File
	// told is a spare's pipe to its follower (see spare.go), or 0.
	told int
	// reused is set on a spare's runs after its first; finished once a
	// run's every descendant is gone.
	reused, finished bool
}

// tell wakes the follower, if any: something it waits for was written. The
// pipe does not block: a full one already holds a token.
func (s *sup) tell() {
	if s.told > 0 {
		syscall.Write(s.told, []byte{1})
	}
}

func (s *sup) fail(what string, err error) error {
	return errors.New(what + ": " + err.Error())
}

// takeKills makes this process a child subreaper and sends the kill
// signals to the supervisor that cur returns: USR2 (a kill or a removal)
// when it is meant for that supervisor's run, and TERM (the sandbox going
// away) always, end every descendant; the supervisor then records the exit.
func takeKills(cur func() *sup) error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return errors.New("cannot become a child subreaper: " + e.Error())
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR2, syscall.SIGTERM)
	go func() {
		for sig := range sigs {
			if s := cur(); s != nil && (sig == syscall.SIGTERM || s.meant()) {
				go s.killAll()
			}
		}
	}()
	return nil
}

// meant says whether a USR2 is for this run: always on a supervisor's
// first run; on a spare's later ones only when the script that sent it
// left .kill in this run's directory (killtree in ../../scripts.go), since
// a USR2 may be a late one meant for a process it ran before. A run whose
// spec is gone was removed: a removal that gave up waiting for the kill
// took .kill with it, and the process must end all the same.
func (s *sup) meant() bool {
	if !s.reused {
		return true
	}
	if _, err := os.Stat(s.dir + "/.kill"); err == nil {
		return true
	}
	_, err := os.Stat(s.dir + "/spec")
	return errors.Is(err, os.ErrNotExist)
}

// prepare makes what a run needs before its command is known (a spare
// makes it while it waits): its own identity and the output pipes.
func (s *sup) prepare() error {
	s.self = os.Getpid()
	var err error
	if s.selfStart, err = startTime(s.self); err != nil {
		return s.fail("cannot read its own start time", err)
	}
	for i := range s.pipes {
		if s.pipes[i][0], s.pipes[i][1], err = os.Pipe(); err != nil {
			return s.fail("cannot make pipes", err)
		}
	}
	return nil
}

func (s *sup) run() error {
	spec, err := os.ReadFile(s.dir + "/spec")
	if err != nil {
		return s.fail("cannot read the spec", err)
	}
	f := strings.Fields(string(spec))
	if len(f) < 6 {
		return errors.New("the spec is malformed")
	}
	open := f[1] == "1"
	timeout, err1 := strconv.ParseFloat(f[2], 64)
	headCap, err2 := strconv.ParseInt(f[3], 10, 64)
	tailCap, err3 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || headCap < 1 || tailCap < 1 {
		return errors.New("the spec is malformed")
	}
	selfStart := s.selfStart

	var outs [2]*os.File
	var copiers sync.WaitGroup
	files := []uintptr{0, 0, 0}
	// The command's ends of its pipes, closed here once it has them, so
	// that the copiers see end-of-file when it and its children are done.
	theirs := []*os.File{s.pipes[0][1], s.pipes[1][1]}
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
	}()
	for i, name := range []string{"stdout", "stderr"} {
		r, w := s.pipes[i][0], s.pipes[i][1]
		seg, err := os.OpenFile(s.dir+"/"+name+".0", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return s.fail("cannot create output files under "+s.dir, err)
		}
		outs[i], files[i+1] = r, w.Fd()
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			s.copy(name, r, seg, headCap, tailCap)
		}()
	}
	holder := 0
	var stdinFeed func()
	switch init := s.dir + "/stdin.init"; {
	case open:
		pid, feed, in, err := s.openStdin(init)
		if err != nil {
			return err
		}
		theirs = append(theirs, in)
		holder, stdinFeed, files[0] = pid, feed, in.Fd()
	default:
		in, err := os.Open(init)
		if err != nil {
			in, err = os.Open(os.DevNull)
		}
		if err != nil {
			return s.fail("cannot open stdin", err)
		}
		theirs = append(theirs, in)
		files[0] = in.Fd()
	}
	up0 := uptime()
	// The command itself, started directly when run.sh is as the driver
	// wrote it (two process starts fewer than sh run.sh and env); else,
	// or should that fail (a cwd gone meanwhile: run.sh exits 126), by sh.
	// A command of plain words starts without the shell (see direct.go).
	err = syscall.ENOENT
	if script, rerr := os.ReadFile(s.dir + "/run.sh"); rerr == nil {
		if dir, env, argv, ok := parseRun(string(script)); ok {
			attr := &syscall.ProcAttr{Dir: dir, Env: mergeEnv(os.Environ(), env), Files: files, Sys: &syscall.SysProcAttr{Setsid: true}}
			if path, direct, ok := directCommand(argv[2], dir, attr.Env); ok {
				plain := *attr
				plain.Env = withPWD(attr.Env, dir)
				s.cmd, err = syscall.ForkExec(path, direct, &plain)
			}
			if err != nil {
				s.cmd, err = syscall.ForkExec(argv[0], argv, attr)
			}
		}
	}
	if err != nil {
		s.cmd, err = syscall.ForkExec("/bin/sh", []string{"/bin/sh", s.dir + "/run.sh"}, &syscall.ProcAttr{
			Env: os.Environ(), Files: files, Sys: &syscall.SysProcAttr{Setsid: true},
		})
	}
	if err != nil {
		return s.fail("cannot start /bin/sh", err)
	}
	for _, f := range theirs {
		f.Close()
	}
	theirs = nil
	if stdinFeed != nil {
		go stdinFeed()
	}
	state := strconv.Itoa(s.cmd) + " " + strconv.Itoa(s.self) + " " + selfStart + " " + strconv.FormatInt(up0, 10) + " " + strconv.Itoa(holder) + " reaper\n"
	if err := writeAtomic(s.dir+"/state", state); err != nil {
		syscall.Kill(-s.cmd, syscall.SIGKILL)
		return s.fail("cannot write "+s.dir+"/state", err)
	}
	s.tell()
	timedOut := atomic.Bool{}
	if timeout > 0 {
		timer := time.AfterFunc(time.Duration(timeout*float64(time.Second)), func() {
			if _, err := os.Stat(s.dir + "/exit"); err != nil {
				os.WriteFile(s.dir+"/timedout", nil, 0o600)
				timedOut.Store(true)
			}
			s.killAll()
		})
		defer timer.Stop()
	}
	// Once every descendant is gone the run is over: no kill reaches past
	// it (a spare goes on to another run).
	defer func() {
		s.killing.Lock()
		s.finished = true
		s.killing.Unlock()
	}()

	// Reap every child: the command, the holder, and every orphan that
	// came back. No child left means no descendant left.
	cmdDone := make(chan int, 1)
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return
			}
			if pid == s.cmd {
				code := ws.ExitStatus()
				if ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
				cmdDone <- code
			}
		}
	}()
	code := <-cmdDone
	up1 := uptime()
	if holder != 0 {
		syscall.Kill(holder, syscall.SIGKILL)
	}
	// Children left holding the output get a moment before the copiers
	// stop; the moment restarts while output still moves.
	s.drain(&copiers, outs)
	t := "0"
	if timedOut.Load() {
		t = "1"
	}
	writeAtomic(s.dir+"/exit", strconv.Itoa(code)+" "+t+" "+strconv.FormatInt(up1, 10)+"\n")
	os.Remove(s.dir + "/stdin")
	select {
	case <-reaped:
		// Nothing of the command's is left: a spare's word that it is
		// free (spareMain) wakes the follower too.
	default:
		s.tell()
		<-reaped
	}
	return nil
}

// openStdin makes the stdin FIFO, gives its write end to a holder process
// (so the command reads end-of-file only once the holder is killed), and
// returns the read end of a pipe fed with stdin.init, then the FIFO.
func (s *sup) openStdin(init string) (holder int, feed func(), in *os.File, err error) {
	fifo := s.dir + "/stdin"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return 0, nil, nil, s.fail("cannot make the stdin FIFO under "+s.dir, err)
	}
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, nil, nil, s.fail("cannot open the stdin FIFO", err)
	}
	wr, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		return 0, nil, nil, s.fail("cannot open the stdin FIFO", err)
	}
	defer wr.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, nil, nil, s.fail("cannot open "+os.DevNull, err)
	}
	defer null.Close()
	holder, err = syscall.ForkExec("/proc/self/exe", []string{"mcp-sandbox-supervisor", "hold"}, &syscall.ProcAttr{
		Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), wr.Fd()},
	})
	if err != nil {
		return 0, nil, nil, s.fail("cannot start the stdin holder", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, nil, nil, s.fail("cannot make pipes", err)
	}
	feed = func() {
		defer pw.Close()
		defer rd.Close()
		if f, err := os.Open(init); err == nil {
			_, err = io.Copy(pw, f)
			f.Close()
			if err != nil {
				return
			}
		}
		io.Copy(pw, rd)
	}
	return holder, feed, pr, nil
}

// drain waits for the copiers to reach the end of their pipes, at most
// while output keeps moving and up to 20s, then cuts them off. A copier
// waiting for a slow follower (under load, it may not move for a while)
// counts as moving: cutting its pipe then would lose what is still in it,
// which the command wrote before it ended.
func (s *sup) drain(copiers *sync.WaitGroup, outs [2]*os.File) {
	done := make(chan struct{})
	go func() { copiers.Wait(); close(done) }()
	quiet := time.NewTimer(200 * time.Millisecond)
	limit := time.After(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last := s.progress()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if now := s.progress(); now != last || s.waiting.Load() > 0 {
				last = now
				quiet.Reset(200 * time.Millisecond)
			}
			continue
		case <-quiet.C:
		case <-limit:
			if s.waiting.Load() > 0 {
				// A follower still reads (it stops being waited for
				// once it stalls): what it reads is the command's.
				limit = time.After(time.Second)
				continue
			}
		}
		break
	}
	outs[0].Close()
	outs[1].Close()
	<-done
}

// progress changes while output moves: bytes copied, or a follower reading.
func (s *sup) progress() string {
	a, _ := os.ReadFile(s.dir + "/.pos.stdout")
	b, _ := os.ReadFile(s.dir + "/.pos.stderr")
	return strconv.FormatInt(s.moved.Load(), 10) + " " + string(a) + " " + string(b)
}

// copy moves one stream into its segments: the head up to headCap bytes,
// then tail segments of tailCap, of which the last two are kept.
func (s *sup) copy(name string, r *os.File, seg *os.File, headCap, tailCap int64) {
	defer func() { seg.Close() }()
	buf := make([]byte, 64<<10)
	var start, size int64
	capacity := headCap
	t1, t2 := int64(-1), int64(-1)
	for {
		room := capacity - size
		if room <= 0 {
			start += size
			size, capacity = 0, tailCap
			seg.Close()
			var err error
			seg, err = os.OpenFile(s.dir+"/"+name+"."+strconv.FormatInt(start, 10), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				io.Copy(io.Discard, r)
				return
			}
			if t1 >= 0 {
				s.waitFollower(name, t2)
				os.Remove(s.dir + "/" + name + "." + strconv.FormatInt(t1, 10))
			}
			t1, t2 = t2, start
			continue
		}
		n, err := r.Read(buf[:min(room, int64(len(buf)))])
		if n > 0 {
			seg.Write(buf[:n])
			size += int64(n)
			s.moved.Add(int64(n))
			s.tell()
		}
		if err != nil {
			return
		}
	}
}

// waitFollower holds a segment until a foreground run following the
// output has read past pos, unless it stops moving for 10s.
func (s *sup) waitFollower(name string, pos int64) {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	was, still := "", 0
	for {
		f, err := os.ReadFile(s.dir + "/.follow")
		fields := strings.Fields(string(f))
		if err != nil || len(fields) != 2 {
			return
		}
		pid, _ := strconv.Atoi(fields[0])
		if st, err := startTime(pid); err != nil || st != fields[1] {
			return
		}
		at, _ := os.ReadFile(s.dir + "/.pos." + name)
		if n, err := strconv.ParseInt(strings.TrimSpace(string(at)), 10, 64); err == nil && n >= pos {
			return
		}
		if string(at) == was {
			if still++; still > 2000 {
				return
			}
		} else {
			was, still = string(at), 0
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// killAll kills the command's group, then every descendant of the
// supervisor until none is left.
func (s *sup) killAll() {
	s.killing.Lock()
	defer s.killing.Unlock()
	if s.finished {
		return
	}
	if s.cmd > 0 {
		syscall.Kill(-s.cmd, syscall.SIGKILL)
	}
	for round := 0; round < 2000; round++ {
		pids := descendants(s.self)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(time.Millisecond)
	}
}

// descendants lists the live (not zombie) processes below root.
func descendants(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	live := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
		live[pid] = f[0] != "Z" && f[0] != "X"
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if live[c] {
				out = append(out, c)
			}
			queue = append(queue, c)
		}
	}
	return out
}

// startTime is field 22 of /proc/PID/stat, which with the pid names one
// process for good.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", errors.New("malformed stat")
	}
	return f[19], nil
}

// uptime is the machine's uptime in centiseconds, the clock the scripts use.
func uptime() int64 {
	b, _ := os.ReadFile("/proc/uptime")
	whole, frac, _ := strings.Cut(strings.Fields(string(b) + " 0")[0], ".")
	w, _ := strconv.ParseInt(whole, 10, 64)
	c, _ := strconv.ParseInt((frac + "00")[:2], 10, 64)
	return w*100 + c
}

func writeAtomic(name, content string) error {
	if err := os.WriteFile(name+".tmp", []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(name+".tmp", name)
}
