package helper

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// start and run are the shell scripts procStartScript and procRunScript
// (../../scripts.go) done natively: the same files, numbers and answers,
// so every other script serves the processes they start, at the cost of
// one process instead of dozens of forks of sh, stat and dd.

// marker is the supervisor's process marker (scripts.go), which the
// process supervisor must not carry.
const marker = "MCP_SANDBOX_EXEC"

// keepFinished is procKeepFinished.
const keepFinished = 32

// base is the scripts' $b: under a plain absolute $TMPDIR, else /tmp.
func base() string {
	b := os.Getenv("TMPDIR")
	if b == "" || !strings.HasPrefix(b, "/") || strings.ContainsFunc(b, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-", r))
	}) {
		b = "/tmp"
	}
	return strings.TrimSuffix(b, "/") + "/.mcp-sandbox-procs"
}

// startArgs are start's: SPEC RUN SUPERVISOR HASSTDIN CWD.
type startArgs struct{ spec, run, sup, hasStdin, cwd string }

// answer ends a start that did not happen with its one-line answer.
type answer string

func (a answer) Error() string { return string(a) }

// startProc is procStartFunc's start: it returns the process's directory
// and number once its supervisor runs the command, and what paces its
// follower. k is serve's spare supervisors (nil elsewhere).
func startProc(a startArgs, follow bool, stdin io.Reader, k *spares) (string, int, *waker, error) {
	if a.cwd != "" {
		st, err := os.Stat(a.cwd)
		if err != nil {
			return "", 0, nil, answer("cwd missing")
		}
		if !st.IsDir() {
			return "", 0, nil, answer("cwd notdir")
		}
	}
	for _, x := range []string{"setsid", "mkfifo", "dd", "stat"} {
		if _, err := exec.LookPath(x); err != nil {
			return "", 0, nil, answer("error the sandbox has no " + x + ", which background processes need")
		}
	}
	b := base()
	name, ok := strings.CutPrefix(a.sup, "helper:")
	if !ok {
		return "", 0, nil, answer("error the native start needs the helper")
	}
	h := b + "/.bin/" + name
	if st, err := os.Stat(h); err != nil || st.Mode()&0o111 == 0 {
		return "", 0, nil, answer("error nohelper")
	}
	os.MkdirAll(b+"/.gone", 0o777)
	if st, err := os.Stat(b + "/.gone"); err != nil || !st.IsDir() || syscall.Access(b, 2) != nil {
		return "", 0, nil, answer("error cannot write " + b + ": the image needs a writable /tmp")
	}
	n := 1
	if x, err := os.ReadFile(b + "/next"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(firstLine(x))); err == nil && v >= 0 {
			n = v
		}
	}
	for ; ; n++ {
		if os.Mkdir(b+"/"+strconv.Itoa(n), 0o777) == nil {
			if _, err := os.Lstat(b + "/.gone/" + strconv.Itoa(n)); err != nil {
				break
			}
			os.Remove(b + "/" + strconv.Itoa(n))
		}
	}
	os.WriteFile(b+"/next", []byte(strconv.Itoa(n+1)+"\n"), 0o666)
	if n%512 == 0 {
		if ents, err := os.ReadDir(b + "/.gone"); err == nil {
			for _, e := range ents {
				if v, err := strconv.Atoi(e.Name()); err == nil && v < n-1024 {
					os.Remove(b + "/.gone/" + e.Name())
				}
			}
		}
	}
	d := b + "/" + strconv.Itoa(n)
	os.WriteFile(d+"/spec", []byte(a.spec+"\n"), 0o666)
	os.WriteFile(d+"/run.sh", []byte(a.run+"\n"), 0o666)
	if a.hasStdin == "1" {
		if f, err := os.OpenFile(d+"/stdin.init", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666); err == nil {
			io.Copy(f, stdin)
			f.Close()
		}
	}
	if follow {
		if st, err := startTime(os.Getpid()); err == nil {
			os.WriteFile(d+"/.follow", []byte(strconv.Itoa(os.Getpid())+" "+st+"\n"), 0o666)
		}
	}
	w, err := superviseIn(h, d, k)
	sl, tries := time.Millisecond, 0
	if err != nil {
		gone(b, n, d)
		return "", 0, nil, answer("error cannot start the process supervisor: " + err.Error())
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(d + "/state"); err == nil {
			break
		}
		if x, err := os.ReadFile(d + "/fail"); err == nil {
			gone(b, n, d)
			return "", 0, nil, answer("error " + firstLine(x))
		}
		if w.ended {
			gone(b, n, d)
			return "", 0, nil, answer("error the process supervisor ended before it started the command (was it killed?)")
		}
		if time.Now().After(deadline) {
			return "", 0, nil, answer("error the process supervisor did not start within 10s")
		}
		// A spare tells when the state is written (or it failed); its
		// wake-up is the next look, the sleep only a backstop.
		w.wait(sl)
		if sl < 10*time.Millisecond && (tries > 50 || w.tokens()) {
			sl = 10 * time.Millisecond
		}
		tries++
	}
	trim(b)
	return d, n, w, nil
}

// superviseIn starts the supervisor of the process in d: a spare when one
// is ready, else the helper h started now. The waker it returns is woken
// by a spare's tokens.
func superviseIn(h, d string, k *spares) (*waker, error) {
	if sp := k.take(h, d); sp != nil {
		return &waker{events: sp.events}, nil
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	pid, err := syscall.ForkExec(h, []string{h, "sup", d}, &syscall.ProcAttr{
		Env: supervisorEnv(), Files: []uintptr{null.Fd(), null.Fd(), null.Fd()}, Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return nil, err
	}
	// Its exit is its own business: reaped in the background, so that it
	// is no zombie of ours while we follow.
	go func() {
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	}()
	return &waker{}, nil
}

// gone forgets number n for good.
func gone(b string, n int, d string) {
	os.WriteFile(b+"/.gone/"+strconv.Itoa(n), nil, 0o666)
	os.RemoveAll(d)
}

// trim forgets the oldest finished processes beyond keepFinished.
func trim(b string) {
	ents, err := os.ReadDir(b)
	if err != nil {
		return
	}
	var nums []int
	for _, e := range ents {
		if v, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			nums = append(nums, v)
		}
	}
	if len(nums) <= keepFinished+8 {
		return
	}
	var fin []int
	for _, v := range nums {
		if _, err := os.Stat(b + "/" + strconv.Itoa(v) + "/exit"); err == nil {
			fin = append(fin, v)
		}
	}
	if len(fin) <= keepFinished {
		return
	}
	sort.Ints(fin)
	for _, v := range fin[:len(fin)-keepFinished] {
		gone(b, v, b+"/"+strconv.Itoa(v))
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(s)
}

// alive is the scripts' alive: pid is still the process that started at st.
func alive(pid, st string) bool {
	p, err := strconv.Atoi(pid)
	if err != nil || p <= 0 {
		return false
	}
	now, err := startTime(p)
	return err == nil && now == st
}

// desc prints a process's record as the scripts' desc does.
func desc(w io.Writer, d string) {
	spec, err1 := os.ReadFile(d + "/spec")
	state, err2 := os.ReadFile(d + "/state")
	if err1 != nil || err2 != nil {
		return
	}
	io.WriteString(w, "proc "+filepath.Base(d)+"\nspec "+firstLine(spec)+"\nstate "+firstLine(state)+"\n")
	exit, err := os.ReadFile(d + "/exit")
	if err != nil {
		if f := strings.Fields(firstLine(state)); len(f) >= 3 && alive(f[1], f[2]) {
			io.WriteString(w, "running\n")
			if _, err := os.Stat(d + "/stdin.closed"); err == nil {
				io.WriteString(w, "stdinclosed\n")
			}
			return
		}
		if exit, err = os.ReadFile(d + "/exit"); err != nil {
			return
		}
	}
	io.WriteString(w, "exit "+firstLine(exit)+"\n")
}

// seg is one output segment: its file, the offset of its first byte, its size.
type seg struct {
	name        string
	start, size int64
}

// segments lists a process's segments of each stream.
func segments(d string) (out, errs []seg) {
	ents, err := os.ReadDir(d)
	if err != nil {
		return nil, nil
	}
	for _, e := range ents {
		stream, off, ok := strings.Cut(e.Name(), ".")
		if !ok || stream != "stdout" && stream != "stderr" {
			continue
		}
		start, err := strconv.ParseInt(off, 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		s := seg{d + "/" + e.Name(), start, info.Size()}
		if stream == "stdout" {
			out = append(out, s)
		} else {
			errs = append(errs, s)
		}
	}
	return out, errs
}

// printSegs is the scripts' segs.
func printSegs(w io.Writer, d string) {
	out, errs := segments(d)
	for _, s := range append(out, errs...) {
		io.WriteString(w, "seg "+s.name+" "+strconv.FormatInt(s.size, 10)+"\n")
	}
}

// piece is a byte range of a segment to send: skip bytes into the file,
// at the stream's absolute offset, k bytes.
type piece struct {
	file        string
	skip, at, k int64
}

// pick is the scripts' pick: the contiguous data from pos, up to want
// bytes, starting at the next kept byte when pos was dropped.
func pick(pos, want int64, segs []seg) (plan []piece, end int64) {
	from := int64(-1)
	for want > 0 {
		var best *seg
		for i := range segs {
			s := &segs[i]
			if s.size > 0 && s.start+s.size > pos && (best == nil || s.start < best.start) {
				best = s
			}
		}
		if best == nil {
			break
		}
		if best.start > pos {
			if from >= 0 {
				break
			}
			pos = best.start
		}
		k := min(best.start+best.size-pos, want)
		if from < 0 {
			from = pos
		}
		plan = append(plan, piece{best.name, pos - best.start, pos, k})
		pos += k
		want -= k
	}
	return plan, pos
}

// flush sends the new output of one stream from pos as frames and returns
// the new position. A piece whose segment went away is not announced.
func flush(w io.Writer, kind string, pos int64, segs []seg) int64 {
	plan, _ := pick(pos, 1<<62, segs)
	for _, p := range plan {
		f, err := os.Open(p.file)
		if err != nil {
			break
		}
		io.WriteString(w, kind+" "+strconv.FormatInt(p.at, 10)+" "+strconv.FormatInt(p.k, 10)+"\n")
		n, _ := io.Copy(w, io.NewSectionReader(f, p.skip, p.k))
		f.Close()
		if n < p.k {
			// Segments only grow; should one have shrunk, the frame still
			// carries what it announced.
			io.CopyN(w, zeros{}, p.k-n)
		}
		pos = p.at + p.k
	}
	return pos
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// startMain is "start SPEC RUN SUPERVISOR HASSTDIN CWD": procStartScript.
// k is serve's spares, or nil.
func startMain(args []string, stdin io.Reader, stdout io.Writer, k *spares) int {
	if len(args) != 5 {
		return 2
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	d, _, _, err := startProc(startArgs{args[0], args[1], args[2], args[3], args[4]}, false, stdin, k)
	var a answer
	if errors.As(err, &a) {
		io.WriteString(w, string(a)+"\n")
		return 0
	}
	desc(w, d)
	printSegs(w, d)
	return 0
}

// runMain is "run SPEC RUN SUPERVISOR HASSTDIN CWD WAIT KEEP":
// procRunScript, with the same frames. It stops following when its output
// cannot be written (the caller went away). k is serve's spares, or nil.
func runMain(args []string, stdin io.Reader, stdout io.Writer, k *spares) int {
	if len(args) != 7 {
		return 2
	}
	wait, err1 := strconv.ParseInt(args[5], 10, 64)
	keep, err2 := strconv.ParseInt(args[6], 10, 64)
	if err1 != nil || err2 != nil {
		return 2
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	d, n, pace, err := startProc(startArgs{args[0], args[1], args[2], args[3], args[4]}, true, stdin, k)
	var a answer
	if errors.As(err, &a) {
		io.WriteString(w, string(a)+"\n")
		return 0
	}
	io.WriteString(w, "P "+strconv.Itoa(n)+"\n")
	w.Flush()
	end := uptime() + wait
	state, _ := os.ReadFile(d + "/state")
	f := strings.Fields(firstLine(state))
	sp, ss := "", ""
	if len(f) >= 3 {
		sp, ss = f[1], f[2]
	}
	var oo, eo int64
	sl, quiet := time.Millisecond, 0
	if pace.tokens() {
		// A spare tells of output and of the end: the sleep is a backstop.
		sl = 50 * time.Millisecond
	}
	fin := false
	for first := true; ; first = false {
		// Ended when recorded, or when the supervisor is gone; checked
		// before the output is read, so that the last read has it all.
		_, err := os.Stat(d + "/exit")
		fin = err == nil || !alive(sp, ss)
		so, se := segments(d)
		wasO, wasE := oo, eo
		// Positions are written when they move (the copiers wait on them).
		if oo = flush(w, "o", oo, so); oo != wasO || first {
			os.WriteFile(d+"/.pos.stdout", []byte(strconv.FormatInt(oo, 10)+"\n"), 0o666)
		}
		if eo = flush(w, "e", eo, se); eo != wasE || first {
			os.WriteFile(d+"/.pos.stderr", []byte(strconv.FormatInt(eo, 10)+"\n"), 0o666)
		}
		if w.Flush() != nil {
			os.Remove(d + "/.follow")
			return 1
		}
		if fin || uptime() >= end {
			break
		}
		// Output flowing: look again at once; quiet: back off.
		if oo+eo != wasO+wasE {
			if !pace.tokens() {
				sl, quiet = time.Millisecond, 0
			}
			continue
		}
		pace.wait(sl)
		if quiet++; quiet > 10 && sl < 50*time.Millisecond {
			sl = min(sl*2, 50*time.Millisecond)
		}
	}
	os.Remove(d + "/.follow")
	io.WriteString(w, "x\n")
	desc(w, d)
	if fin && oo <= keep && eo <= keep {
		gone(base(), n, d)
		io.WriteString(w, "removed\n")
	} else {
		printSegs(w, d)
	}
	return 0
}

// parseRun reads a run.sh as the supervisor writes it (runScript in
// ../../supervisor.go: an optional cd, then exec [env -- K=V...] /bin/sh -c
// CMD NAME, every argument single-quoted), so that the command can be
// started directly instead of through a shell and env(1). Anything else
// is not ok, and run.sh is run by sh as it stands.
func parseRun(script string) (dir string, env, argv []string, ok bool) {
	lines := strings.Split(strings.TrimRight(script, "\n"), "\n")
	if len(lines) == 2 {
		w, ok := shellWords(lines[0])
		if !ok || len(w) != 5 || w[0] != "cd" || w[2] != "||" || w[3] != "exit" || w[4] != "126" {
			return "", nil, nil, false
		}
		dir, lines = w[1], lines[1:]
	}
	if len(lines) != 1 {
		return "", nil, nil, false
	}
	w, ok := shellWords(lines[0])
	if !ok || len(w) < 2 || w[0] != "exec" {
		return "", nil, nil, false
	}
	w = w[1:]
	if w[0] == "env" {
		if len(w) < 2 || w[1] != "--" {
			return "", nil, nil, false
		}
		w = w[2:]
		for len(w) > 0 && strings.Contains(w[0], "=") && !strings.HasPrefix(w[0], "=") {
			env = append(env, w[0])
			w = w[1:]
		}
	}
	if len(w) != 4 || w[0] != "/bin/sh" || w[1] != "-c" {
		return "", nil, nil, false
	}
	return dir, env, w, true
}

// shellWords splits a line of words made of single-quoted strings, \'
// and plain characters; anything a shell would read otherwise is not ok.
func shellWords(line string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	in, started := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case in:
			if c == '\'' {
				in = false
			} else {
				cur.WriteByte(c)
			}
		case c == '\'':
			in, started = true, true
		case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
			cur.WriteByte('\'')
			i++
			started = true
		case c == ' ':
			if started {
				words = append(words, cur.String())
				cur.Reset()
				started = false
			}
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/_.-|=", c) >= 0:
			cur.WriteByte(c)
			started = true
		default:
			return nil, false
		}
	}
	if in {
		return nil, false
	}
	if started {
		words = append(words, cur.String())
	}
	return words, true
}

// mergeEnv is env(1)'s: the assignments override the environment.
func mergeEnv(base, set []string) []string {
	if len(set) == 0 {
		return base
	}
	names := map[string]bool{}
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		names[k] = true
	}
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !names[k] {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}
