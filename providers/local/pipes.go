package local

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// An outPipe copies one output pipe of a command from a goroutine of its
// own. The command's output must all arrive however late that goroutine
// runs: when the command has exited, every byte it wrote is already in the
// pipe, so stopping takes what the pipe holds before it stops. Only bytes
// written later, by children that outlived the command, can be cut.
type outPipe struct {
	r    *os.File // pollable (non-blocking), so a deadline interrupts a read
	keep func([]byte)
	cut  atomic.Bool // set before the deadline that ends the copy for good
	eof  bool        // the pipe reached end-of-file; read once done is closed
	done chan struct{}
}

func copyPipe(r *os.File, keep func([]byte)) *outPipe {
	o := &outPipe{r: r, keep: keep, done: make(chan struct{})}
	go o.run()
	return o
}

func (o *outPipe) run() {
	defer close(o.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := o.r.Read(buf)
		if n > 0 {
			o.keep(buf[:n])
		}
		switch {
		case err == io.EOF:
			o.eof = true
			return
		case errors.Is(err, os.ErrDeadlineExceeded) && o.cut.Load():
			o.eof = drainBuffered(o.r, buf, o.keep)
			return
		case err != nil:
			return
		}
	}
}

// pause stops the copy and leaves what it has not read in the pipe, for
// another reader to take over.
func (o *outPipe) pause() {
	o.r.SetReadDeadline(time.Now())
	<-o.done
	o.r.SetReadDeadline(time.Time{})
}

// finishPipes ends the copies once the command has exited. Children that
// still hold a pipe (`server &`) get grace to finish; then each copy takes
// what its pipe holds and stops. It reports whether a pipe was still open
// then: output a leftover child writes later is not copied.
func finishPipes(grace time.Duration, pipes ...*outPipe) (cut bool) {
	t := time.NewTimer(grace)
	defer t.Stop()
wait:
	for _, o := range pipes {
		select {
		case <-o.done:
		case <-t.C:
			break wait
		}
	}
	for _, o := range pipes {
		o.cut.Store(true)
		o.r.SetReadDeadline(time.Now())
		<-o.done
		if !o.eof {
			cut = true
		}
	}
	return cut
}

// drainBuffered reads, without waiting, the bytes the pipe holds now: all
// that a command which has exited wrote (and whatever its leftover
// children wrote before now). Reading stops there even if more keeps
// coming. It reports whether the pipe then reads as end-of-file, that is,
// whether no writer is left.
func drainBuffered(r *os.File, buf []byte, keep func([]byte)) (eof bool) {
	r.SetReadDeadline(time.Time{})
	rc, err := r.SyscallConn()
	if err != nil {
		return false
	}
	// read makes one non-blocking read(2): RawConn.Read's callback returns
	// true, so it never waits for the pipe to become readable.
	read := func(p []byte) (n int, errno error) {
		if err := rc.Read(func(fd uintptr) bool {
			n, errno = syscall.Read(int(fd), p)
			return true
		}); err != nil {
			return 0, err
		}
		return n, errno
	}
	avail := 0
	rc.Control(func(fd uintptr) { avail = pipeBuffered(fd) })
	for avail > 0 {
		n, err := read(buf[:min(avail, len(buf))])
		if n <= 0 || err != nil {
			return false
		}
		keep(buf[:n])
		avail -= n
	}
	// Whatever arrives from here on is a leftover child's: look once for
	// end-of-file, keeping what that look returns.
	n, err := read(buf)
	if n > 0 {
		keep(buf[:n])
	}
	return n == 0 && err == nil
}

// pipeBuffered returns how many bytes the pipe fd holds (FIONREAD), or 0
// when that cannot be told.
func pipeBuffered(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, fionread, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int(n)
}
