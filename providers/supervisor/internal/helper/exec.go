package helper

import (
	"bufio"
	"encoding/base64"
	"errors"
	"flag"
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

// exec runs one command in the foreground for a driver whose vendor API
// returns output as text: it is one process where a shell wrapper needs a
// relay or a filter per stream, so a command costs one more process, not
// eight. As in "sup", it is a child subreaper and a kill (SIGUSR2, SIGTERM,
// or the timeout) ends every descendant however it detached.
//
//	exec [-enc esc|b64] [-stdin] [-timeout SECONDS] [-cwd DIR] [-pid FILE] -- COMMAND [NAME=VALUE]...
//
// Encodings of the two streams:
//
//   - esc (for logs that label output line by line and lose NUL bytes):
//     each stream starts with `\s`; output passes with \ 0 1 2 written as
//     \\ \0 \1 \2; a timeout writes `\t` on stdout; the end is `\e<code>`
//     and a newline on stdout, `\e` and a newline on stderr. Stdin comes as
//     base64 lines, up to a "." line.
//   - b64 (for JSON strings): output as base64 lines, one per read; stdout
//     also carries reports: "!run" first, "!timeout", "!exit <code>" last.
//     Stdin comes as base64 lines, up to end-of-file.
//
// A missing or unusable cwd is reported before anything runs: "!nodir" or
// "!notdir" (b64), `\cnodir` or `\cnotdir` (esc), exit code 1. The helper
// exits with the command's exit code.
func runExec(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	enc := fs.String("enc", "esc", "output encoding: esc or b64")
	withStdin := fs.Bool("stdin", false, "pass stdin on, decoded")
	timeout := fs.Float64("timeout", 0, "kill everything after this many seconds (0: never)")
	cwd := fs.String("cwd", "", "working directory")
	pidFile := fs.String("pid", "", "file to hold this process's pid while it runs")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || (*enc != "esc" && *enc != "b64") {
		os.Stderr.WriteString("usage: exec [-enc esc|b64] [-stdin] [-timeout S] [-cwd DIR] [-pid FILE] -- COMMAND [NAME=VALUE]...\n")
		return 2
	}
	e := &encoder{b64: *enc == "b64"}
	e.start()
	if *cwd != "" {
		if fi, err := os.Stat(*cwd); err != nil || !fi.IsDir() {
			why := "nodir"
			if err == nil {
				why = "notdir"
			}
			e.report(why)
			e.end(1)
			return 1
		}
	}
	env := os.Environ()
	for _, kv := range fs.Args()[1:] {
		if k, _, ok := strings.Cut(kv, "="); ok && k != "" {
			env = append(env, kv)
		}
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		os.Stderr.WriteString("cannot become a child subreaper: " + errno.Error() + "\n")
		return 125
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	k := &sup{self: os.Getpid()}
	// Kills: a signal from the driver (listened for before the pid file
	// tells where to send it), or the timeout.
	var killed, timedOut atomic.Bool
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR2, syscall.SIGTERM)
	go func() {
		for range sigs {
			killed.Store(true)
			go k.killAll()
		}
	}()
	if *pidFile != "" {
		if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(k.self)+"\n"), 0o600); err == nil {
			defer os.Remove(*pidFile)
		}
	}

	var theirs []*os.File
	closeTheirs := func() {
		for _, f := range theirs {
			f.Close()
		}
		theirs = nil
	}
	defer closeTheirs()
	files := []uintptr{0, 0, 0}
	var stdinW *os.File
	if *withStdin {
		r, w, err := os.Pipe()
		if err != nil {
			os.Stderr.WriteString("cannot make pipes: " + err.Error() + "\n")
			return 125
		}
		theirs, files[0], stdinW = append(theirs, r), r.Fd(), w
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 125
		}
		theirs, files[0] = append(theirs, null), null.Fd()
	}
	var outs [2]*os.File
	for i := range outs {
		r, w, err := os.Pipe()
		if err != nil {
			os.Stderr.WriteString("cannot make pipes: " + err.Error() + "\n")
			return 125
		}
		theirs, outs[i], files[i+1] = append(theirs, w), r, w.Fd()
	}
	dir := *cwd
	attr := &syscall.ProcAttr{Dir: dir, Env: env, Files: files, Sys: &syscall.SysProcAttr{Setsid: true}}
	var cmd int
	var err error = syscall.ENOENT
	if path, argv, ok := directCommand(fs.Arg(0), dir, env); ok {
		direct := *attr
		direct.Env = withPWD(env, dir)
		cmd, err = syscall.ForkExec(path, argv, &direct)
	}
	if err != nil {
		cmd, err = syscall.ForkExec("/bin/sh", []string{"/bin/sh", "-c", fs.Arg(0)}, attr)
	}
	if err != nil {
		os.Stderr.WriteString("cannot start /bin/sh: " + err.Error() + "\n")
		return 127
	}
	closeTheirs()
	k.killing.Lock()
	k.cmd = cmd
	k.killing.Unlock()
	if killed.Load() {
		go k.killAll() // a kill that came before the command did
	}
	if *timeout > 0 {
		time.AfterFunc(time.Duration(*timeout*float64(time.Second)), func() {
			timedOut.Store(true)
			k.killAll()
		})
	}
	if stdinW != nil {
		go feedStdin(os.Stdin, stdinW, e.b64)
	}

	var exited atomic.Bool
	var copiers sync.WaitGroup
	for i, r := range outs {
		copiers.Go(func() { e.copy(i, r, &exited) })
	}
	code := reap(cmd)
	// Output already written is in the pipes; a background child holding
	// them gets a short quiet moment to add to it, no more: the call is
	// the command's, not its children's.
	exited.Store(true)
	for _, r := range outs {
		r.SetReadDeadline(time.Now().Add(quietAfterExit))
	}
	copiers.Wait()
	if killed.Load() || timedOut.Load() {
		// A kill is finished before this process exits: what it has not
		// reached yet would otherwise be orphaned past this subreaper.
		k.killAll()
	}
	if timedOut.Load() {
		e.report("timeout")
	}
	e.end(code)
	return code
}

// quietAfterExit is how long output may pause, once the command has
// exited, before the rest is left to the children still writing it.
const quietAfterExit = 50 * time.Millisecond

// reap waits for the command and reaps every orphan that comes back, and
// returns the command's exit code as a shell reports it.
func reap(cmd int) int {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 125
		}
		if pid == cmd {
			// Orphans reaped later go on being reaped by whoever
			// inherits them when this process exits.
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}

// feedStdin decodes base64 lines into w, up to a "." line (esc) or
// end-of-file, then closes w. Empty lines are padding.
func feedStdin(in io.Reader, w *os.File, untilEOF bool) {
	defer w.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	buf := make([]byte, 0, 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		if !untilEOF && string(line) == "." {
			return
		}
		buf = buf[:0]
		buf = append(buf, make([]byte, base64.StdEncoding.DecodedLen(len(line)))...)
		n, err := base64.StdEncoding.Decode(buf, line)
		if err != nil {
			return
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return
		}
	}
}

// encoder writes the two streams in the driver's encoding.
type encoder struct {
	b64 bool
	mu  sync.Mutex // stdout carries reports as well as output
}

var streams = [2]*os.File{os.Stdout, os.Stderr}

func (e *encoder) write(i int, b []byte) {
	if i == 0 {
		e.mu.Lock()
		defer e.mu.Unlock()
	}
	streams[i].Write(b)
}

func (e *encoder) start() {
	if e.b64 {
		e.write(0, []byte("!run\n"))
		return
	}
	e.write(0, []byte(`\s`))
	e.write(1, []byte(`\s`))
}

func (e *encoder) report(what string) {
	switch {
	case e.b64:
		e.write(0, []byte("!"+what+"\n"))
	case what == "timeout":
		e.write(0, []byte(`\t`))
	default:
		e.write(0, []byte(`\c`+what))
	}
}

func (e *encoder) end(code int) {
	if e.b64 {
		e.write(0, []byte("!exit "+strconv.Itoa(code)+"\n"))
		return
	}
	e.write(0, []byte(`\e`+strconv.Itoa(code)+"\n"))
	e.write(1, []byte("\\e\n"))
}

// copy encodes stream i from r as it arrives, until end-of-file or, once
// the command has exited, a quiet moment.
func (e *encoder) copy(i int, r *os.File, exited *atomic.Bool) {
	defer r.Close()
	buf := make([]byte, 64<<10)
	var out []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			out = e.encode(out[:0], buf[:n])
			e.write(i, out)
			if exited.Load() {
				r.SetReadDeadline(time.Now().Add(quietAfterExit))
			}
		}
		if err != nil {
			return
		}
	}
}

func (e *encoder) encode(out, b []byte) []byte {
	if e.b64 {
		out = base64.StdEncoding.AppendEncode(out, b)
		return append(out, '\n')
	}
	for _, c := range b {
		switch c {
		case '\\':
			out = append(out, '\\', '\\')
		case 0, 1, 2:
			out = append(out, '\\', '0'+c)
		default:
			out = append(out, c)
		}
	}
	return out
}
