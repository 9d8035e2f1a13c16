package helper

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// File checks a driver makes around its provider's file API, done by the
// helper so that a channel (serve) answers them in its own process, with no
// process started in the sandbox:
//
//	stat PATH    what PATH leads to, a final symlink followed:
//	             "<st_mode in hex> <size> <mtime in s>", "dangling" or "missing"
//	lstat PATH   the same for PATH itself: the line, or "missing"
//	place TMP TARGET SIZE MODE
//	             moves the upload TMP over TARGET once it is a regular file of
//	             SIZE bytes, with MODE (octal) as its permissions
//
// The lines are those of `stat -c '%f %s %Y'` and of the drivers' shell
// checks. place never removes TMP: on a failure (exit 1, the reason on
// stderr) the driver does, so that a TMP gone means it was moved into place.
// Relative paths start from dir: the channel's run request's directory, or
// the working directory when run as a command.

// fileOp runs one of the modes above; ok is false for another mode.
func fileOp(mode, dir string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	switch mode {
	case "stat", "lstat":
		if len(args) != 1 {
			io.WriteString(stderr, "usage: "+mode+" PATH\n")
			return 2, true
		}
		io.WriteString(stdout, statLine(at(dir, args[0]), mode == "stat")+"\n")
		return 0, true
	case "place":
		return place(dir, args, stderr), true
	}
	return 0, false
}

func at(dir, p string) string {
	if filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}

// statLine answers as the drivers' shell checks do: `[ -e ]` and `[ -L ]`,
// which say "no" for any error, then `stat -c '%f %s %Y'`.
func statLine(p string, follow bool) string {
	var st syscall.Stat_t
	if follow {
		if syscall.Stat(p, &st) != nil {
			if syscall.Lstat(p, &st) == nil {
				return "dangling"
			}
			return "missing"
		}
	} else if syscall.Lstat(p, &st) != nil {
		return "missing"
	}
	return strconv.FormatUint(uint64(st.Mode), 16) + " " + strconv.FormatInt(st.Size, 10) + " " + strconv.FormatInt(int64(st.Mtim.Sec), 10)
}

func place(dir string, args []string, stderr io.Writer) int {
	fail := func(msg string) int {
		io.WriteString(stderr, msg+"\n")
		return 1
	}
	if len(args) != 4 {
		io.WriteString(stderr, "usage: place TMP TARGET SIZE MODE\n")
		return 2
	}
	size, err1 := strconv.ParseInt(args[2], 10, 64)
	perm, err2 := strconv.ParseUint(args[3], 8, 32)
	if err1 != nil || err2 != nil || size < 0 || perm > 0o7777 {
		io.WriteString(stderr, "usage: place TMP TARGET SIZE MODE\n")
		return 2
	}
	tmp, target := at(dir, args[0]), at(dir, args[1])
	fi, err := os.Lstat(tmp)
	switch {
	case err != nil:
		return fail("the upload is not there: " + errText(err))
	case !fi.Mode().IsRegular():
		return fail("the upload is not a regular file")
	case fi.Size() != size:
		return fail("the upload arrived short")
	}
	if t, err := os.Lstat(target); err == nil && t.IsDir() {
		return fail("is a directory")
	}
	if uint64(fi.Mode().Perm()) != perm&0o777 || perm > 0o777 {
		if err := os.Chmod(tmp, modeBits(uint32(perm))); err != nil {
			return fail("chmod: " + errText(err))
		}
	}
	if err := os.Rename(tmp, target); err != nil {
		return fail("cannot move the upload into place: " + errText(err))
	}
	return 0
}

// modeBits turns Unix permission bits (with setuid, setgid and sticky)
// into an os.FileMode.
func modeBits(perm uint32) os.FileMode {
	m := os.FileMode(perm & 0o777)
	if perm&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if perm&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if perm&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// errText is the system's word for what went wrong ("permission denied").
func errText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	if le, ok := err.(*os.LinkError); ok {
		return le.Err.Error()
	}
	return err.Error()
}
