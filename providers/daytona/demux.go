package daytona

import (
	"bytes"
	"io"
	"strconv"
)

// demux splits the daemon's labelled log into stdout and stderr and undoes
// the wrapper's escaping (see wrapper and the helper's exec mode): each
// stream starts with \s (what comes before is the shell's, not the
// command's, and is dropped); \\ \0 \1 \2 stand for a backslash and the
// bytes 0, 1 and 2; on stdout \t says the command timed out and \c<word>
// reports a cwd it could not use; \e ends the stream (on stdout, followed
// by the exit status and a newline). The
// escaped streams hold no byte 1 or 2, so every such byte is part of a
// marker (three of them: stdout 1 1 1, stderr 2 2 2).
type demux struct {
	cur      *unescaper
	streams  [2]*unescaper
	timedOut bool
	report   string
}

func newDemux(stdout, stderr io.Writer) *demux {
	d := &demux{}
	d.streams = [2]*unescaper{{w: stdout, d: d}, {w: stderr, d: d}}
	return d
}

// started reports whether the wrapper began either stream.
func (d *demux) started() bool { return d.streams[0].started || d.streams[1].started }

// ended reports whether both streams reached their end mark.
func (d *demux) ended() bool { return d.streams[0].done && d.streams[1].done }

// exitCode is the status stdout's end mark carried.
func (d *demux) exitCode() (int, bool) {
	u := d.streams[0]
	if !u.done || !u.codeEnd {
		return 0, false
	}
	n, err := strconv.Atoi(string(u.code))
	return n, err == nil
}

func (d *demux) write(b []byte) error {
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\x01\x02")
		if i < 0 {
			return d.emit(b)
		}
		if err := d.emit(b[:i]); err != nil {
			return err
		}
		d.cur = d.streams[b[i]-1]
		b = b[i+1:]
	}
	return nil
}

func (d *demux) emit(b []byte) error {
	if d.cur == nil || len(b) == 0 {
		return nil // nothing precedes the first marker
	}
	return d.cur.write(b)
}

// unescaper decodes one stream.
type unescaper struct {
	w       io.Writer
	d       *demux
	started bool // \s was seen
	report  []byte
	inRep   bool // reading a \c report, up to the next backslash
	esc     bool // the previous chunk ended in a backslash
	done    bool
	code    []byte // what follows the end mark, up to its newline
	codeEnd bool
	out     []byte
}

func (u *unescaper) write(b []byte) error {
	if u.done {
		if !u.codeEnd {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				i = len(b)
			} else {
				u.codeEnd = true
			}
			if len(u.code)+i <= 12 {
				u.code = append(u.code, b[:i]...)
			}
		}
		return nil
	}
	u.out = u.out[:0]
	for len(b) > 0 {
		if u.inRep {
			i := bytes.IndexByte(b, '\\')
			if i < 0 {
				i = len(b)
			}
			if len(u.report)+i <= 16 {
				u.report = append(u.report, b[:i]...)
			}
			b = b[i:]
			if len(b) == 0 {
				break
			}
			u.inRep = false
			u.d.report = string(u.report)
			continue
		}
		if !u.started && !u.esc {
			// Before the start mark: the shell's own words, if any.
			i := bytes.IndexByte(b, '\\')
			if i < 0 {
				break
			}
			u.esc, b = true, b[i+1:]
			continue
		}
		if u.esc {
			u.esc = false
			if !u.started {
				u.started = b[0] == 's'
				b = b[1:]
				continue
			}
			switch b[0] {
			case 's':
			case 't':
				u.d.timedOut = true
			case 'c':
				u.inRep = true
			case '0':
				u.out = append(u.out, 0)
			case '1':
				u.out = append(u.out, 1)
			case '2':
				u.out = append(u.out, 2)
			case 'e':
				u.done = true
				err := u.flush()
				u.write(b[1:]) // the exit status after the mark
				return err
			default:
				u.out = append(u.out, b[0])
			}
			b = b[1:]
			continue
		}
		i := bytes.IndexByte(b, '\\')
		if i < 0 {
			u.out = append(u.out, b...)
			break
		}
		u.out = append(u.out, b[:i]...)
		u.esc = true
		b = b[i+1:]
	}
	return u.flush()
}

func (u *unescaper) flush() error {
	if u.w == nil || len(u.out) == 0 {
		return nil
	}
	_, err := u.w.Write(u.out)
	return err
}
