package helper

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A spare is a process supervisor started before its command is known, so
// that a command run through serve does not wait for a Go program to start
// (several milliseconds, tens on a loaded machine): serve keeps one ready
// and hands it the next process's directory. It then supervises exactly as
// "sup DIR" does (one supervisor per process while it runs, a child
// subreaper, the same files), and in addition tells serve on its fd 3
// whenever it has written something a follower waits for (the state,
// output, the exit), so that the follower reads at once instead of
// polling. Once every descendant of a run is gone it marks the run's
// directory .released (kills no longer reach for it there, see killtree)
// and tells serve it is free for another run, so that a quick command
// costs no Go program's start at all.

// Tokens a spare writes on fd 3.
const (
	tokenProgress = 1
	tokenFree     = 2
)

// spareMain is "spare": it reads a directory from stdin, supervises the
// process there, and again, until stdin ends.
func spareMain() int {
	syscall.CloseOnExec(0)
	syscall.CloseOnExec(3)
	syscall.SetNonblock(3, true)
	var cur atomic.Pointer[sup]
	kerr := takeKills(cur.Load)
	in := bufio.NewReader(os.Stdin)
	for runs := 0; ; runs++ {
		s := &sup{told: 3, reused: runs > 0}
		// Everything that does not need the directory is done while
		// waiting: in a process just started, each first step is slow.
		err := kerr
		if err == nil {
			err = s.prepare()
		}
		line, rerr := in.ReadString('\n')
		s.dir = strings.TrimSuffix(line, "\n")
		if rerr != nil || !strings.HasPrefix(s.dir, "/") {
			return 0
		}
		if err != nil {
			os.WriteFile(s.dir+"/fail", []byte(err.Error()+"\n"), 0o600)
			s.tell()
			return 1
		}
		cur.Store(s)
		if code := s.supervise(); code != 0 {
			return code
		}
		cur.Store(nil)
		os.WriteFile(s.dir+"/.released", nil, 0o600)
		syscall.Write(3, []byte{tokenFree})
	}
}

// spares keeps an idle spare supervisor of a helper for serve's next
// start or run. Spares come back when their runs end; another is started
// only when a command finds none idle (the last one is still busy: a long
// command, or what it left running), and one more than needed leaves.
type spares struct {
	helper string // the helper's path, which the spares run
	mu     sync.Mutex
	idle   *spare
	making bool
}

type spare struct {
	dir    *os.File      // where its directories go
	events chan struct{} // a token whenever it tells of progress; closed when it ends
}

func newSpares(helper string) *spares { return &spares{helper: helper} }

// refill starts a spare in the background unless one is idle or coming.
func (k *spares) refill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.idle != nil || k.making {
		return
	}
	k.making = true
	go func() {
		sp := k.make()
		k.mu.Lock()
		k.making = false
		k.mu.Unlock()
		if sp != nil {
			k.put(sp)
		}
	}()
}

// put keeps sp as the idle spare, or lets it go when one is idle already.
func (k *spares) put(sp *spare) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.idle == nil {
		k.idle = sp
		return
	}
	sp.dir.Close() // its stdin ends: it leaves
}

// take hands the idle spare of helper h the directory d and returns it,
// or nil when none is idle: the caller then starts a supervisor itself.
func (k *spares) take(h, d string) *spare {
	if k == nil || h != k.helper {
		return nil
	}
	k.mu.Lock()
	sp := k.idle
	k.idle = nil
	k.mu.Unlock()
	// Another is made only if none is idle a moment later: the spare of a
	// quick command is back long before (commands started back to back
	// find it busy, and would otherwise start one each).
	time.AfterFunc(100*time.Millisecond, k.refill)
	if sp == nil {
		return nil
	}
	if _, err := sp.dir.WriteString(d + "\n"); err != nil {
		sp.dir.Close() // it died waiting (killed from inside the sandbox)
		return nil
	}
	return sp
}

// make starts a spare: its stdin a pipe for its directories, its fd 3 a
// pipe of tokens. Like any supervisor it is a session of its own and
// does not carry the exec marker.
func (k *spares) make() *spare {
	dirR, dirW, err := os.Pipe()
	if err != nil {
		return nil
	}
	defer dirR.Close()
	evR, evW, err := os.Pipe()
	if err != nil {
		dirW.Close()
		return nil
	}
	defer evW.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		dirW.Close()
		evR.Close()
		return nil
	}
	defer null.Close()
	pid, err := syscall.ForkExec(k.helper, []string{k.helper, "spare"}, &syscall.ProcAttr{
		Env: supervisorEnv(), Files: []uintptr{dirR.Fd(), null.Fd(), null.Fd(), evW.Fd()}, Sys: &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		dirW.Close()
		evR.Close()
		return nil
	}
	sp := &spare{dir: dirW, events: make(chan struct{}, 1)}
	go func() {
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	}()
	go func() {
		defer close(sp.events)
		defer evR.Close()
		buf := make([]byte, 256)
		for {
			n, err := evR.Read(buf)
			if err != nil {
				return
			}
			// Free comes last in a run: nothing of that run follows it.
			// The spare is idle again before its follower is woken, so
			// that the next command, which may come as soon as the
			// follower answers, finds it rather than starting another.
			if bytes.IndexByte(buf[:n], tokenFree) >= 0 {
				k.put(sp)
			}
			select {
			case sp.events <- struct{}{}:
			default:
			}
		}
	}()
	return sp
}

// supervisorEnv is a supervisor's environment: this process's, without the
// exec marker, which a process must not carry.
func supervisorEnv() []string {
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, marker+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// waker paces a follower: woken by its supervisor's tokens when it has
// them, else (or at the latest) after a sleep.
type waker struct {
	events <-chan struct{}
	ended  bool // the spare's pipe closed: it has left
}

func (w *waker) wait(d time.Duration) {
	if w.events == nil {
		time.Sleep(d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case _, ok := <-w.events:
		if !ok {
			w.events, w.ended = nil, true // nothing more will come
		}
	case <-t.C:
	}
}

// tokens says whether progress is told rather than polled for.
func (w *waker) tokens() bool { return w.events != nil }
