package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe raises the kernel buffer of a pipe on stdin or stdout to 1 MiB
// (the default limit for unprivileged processes): through the default 64 KiB,
// a 1 MiB read_file answer crosses in 32 turns between server and client,
// each waiting for the other to be scheduled, which on a busy machine costs
// more than producing the answer. Anything but a pipe is left alone, and a
// refusal (a lower limit) leaves the pipe as it was.
func growPipe(f any) {
	file, ok := f.(*os.File)
	if !ok {
		return
	}
	if fi, err := file.Stat(); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	// Through SyscallConn: Fd would put the pipe in blocking mode.
	if conn, err := file.SyscallConn(); err == nil {
		conn.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
}
