package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// An output log stores one stream of a process in segment files named
// <stream>.<offset of their first byte>, so a reader in any process can map
// absolute offsets to files without coordinating with the writer. The first
// segment (the head) is kept whole; after it, the tail rotates through two
// segments, so at most limit bytes are on disk and the middle of an
// overlong stream is what gets dropped.

// defaultOutputLimit is the bytes kept per stream when a spec sets none.
const defaultOutputLimit = 64 << 20

func segmentName(stream string, start int64) string {
	return fmt.Sprintf("%s.%016d", stream, start)
}

type outWriter struct {
	dir, stream      string
	headCap, tailCap int64
	f                *os.File
	start, size      int64   // the segment being written
	tails            []int64 // starts of the tail segments on disk, oldest first
}

// newOutWriter prepares a log; its first segment is created on the first
// write, so a silent stream costs no file (readers see a missing stream as
// empty).
func newOutWriter(dir, stream string, limit int64) *outWriter {
	if limit <= 0 {
		limit = defaultOutputLimit
	}
	head := max(limit/2, 1)
	return &outWriter{dir: dir, stream: stream, headCap: head, tailCap: max((limit-head)/2, 1)}
}

// resumeOutWriter continues a log another process wrote.
func resumeOutWriter(dir, stream string, limit int64) (*outWriter, error) {
	w := newOutWriter(dir, stream, limit)
	segs, err := segments(dir, stream)
	if err != nil || len(segs) == 0 {
		return w, err
	}
	last := segs[len(segs)-1]
	f, err := openRegular(filepath.Join(dir, segmentName(stream, last.start)), os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return nil, err
	}
	w.f, w.start, w.size = f, last.start, last.size
	for _, s := range segs {
		if s.start != 0 {
			w.tails = append(w.tails, s.start)
		}
	}
	return w, nil
}

func (w *outWriter) capacity() int64 {
	if w.start == 0 {
		return w.headCap
	}
	return w.tailCap
}

// Write appends to the current segment, starting a new one when it is full
// and deleting the oldest tail segment when there would be three.
func (w *outWriter) Write(p []byte) (int, error) {
	n := len(p)
	if w.f == nil && n > 0 {
		f, err := os.OpenFile(filepath.Join(w.dir, segmentName(w.stream, 0)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return 0, err
		}
		w.f = f
	}
	for len(p) > 0 {
		room := w.capacity() - w.size
		if room <= 0 {
			if err := w.rotate(); err != nil {
				return n - len(p), err
			}
			continue
		}
		k := int(min(room, int64(len(p))))
		if _, err := w.f.Write(p[:k]); err != nil {
			return n - len(p), err
		}
		w.size += int64(k)
		p = p[k:]
	}
	return n, nil
}

func (w *outWriter) rotate() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	w.start += w.size
	w.size = 0
	// Create the new segment before deleting the old one, so a reader never
	// sees the stream shrink.
	f, err := os.OpenFile(filepath.Join(w.dir, segmentName(w.stream, w.start)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w.f = f
	w.tails = append(w.tails, w.start)
	if len(w.tails) > 2 {
		os.Remove(filepath.Join(w.dir, segmentName(w.stream, w.tails[0])))
		w.tails = w.tails[1:]
	}
	return nil
}

func (w *outWriter) Close() error {
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

type segment struct {
	start, size int64
}

// segments lists a stream's segment files in offset order.
func segments(dir, stream string) ([]segment, error) {
	ents, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), stream+".")
		if !ok {
			continue
		}
		start, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed by the writer meanwhile
		}
		segs = append(segs, segment{start: start, size: fi.Size()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })
	return segs, nil
}

func streamTotal(segs []segment) int64 {
	if len(segs) == 0 {
		return 0
	}
	last := segs[len(segs)-1]
	return last.start + last.size
}

// readStream reads up to limit bytes from offset. When the bytes at offset
// were dropped, the read starts at the next byte kept, and dataOff says
// where.
func readStream(dir, stream string, offset int64, limit int) (data []byte, dataOff, total int64, err error) {
	for attempt := 0; ; attempt++ {
		data, dataOff, total, err = readStreamOnce(dir, stream, offset, limit)
		// A segment can vanish between listing and opening when the writer
		// rotates; the next listing no longer has it.
		if !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			return data, dataOff, total, err
		}
	}
}

func readStreamOnce(dir, stream string, offset int64, limit int) ([]byte, int64, int64, error) {
	segs, err := segments(dir, stream)
	if err != nil {
		return nil, 0, 0, err
	}
	total := streamTotal(segs)
	if offset > total {
		return nil, 0, total, providers.Errorf(providers.ErrInvalidArgument,
			"offset %d is past the end of %s, which has %d bytes so far", offset, stream, total)
	}
	data := make([]byte, 0, min(int64(limit), total-offset))
	dataOff := int64(-1)
	pos := offset
	for _, s := range segs {
		if len(data) >= limit {
			break
		}
		end := s.start + s.size
		if end <= pos || s.size == 0 {
			continue
		}
		if pos < s.start {
			if dataOff >= 0 {
				break // a gap after data: stop, so Data stays contiguous
			}
			pos = s.start
		}
		f, err := openRegular(filepath.Join(dir, segmentName(stream, s.start)), os.O_RDONLY)
		if err != nil {
			return nil, 0, total, err
		}
		want := min(int64(limit-len(data)), end-pos)
		buf := data[len(data) : len(data)+int(want)]
		n, err := f.ReadAt(buf, pos-s.start)
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, total, err
		}
		if dataOff < 0 {
			dataOff = pos
		}
		data = data[:len(data)+n]
		pos += int64(n)
		if int64(n) < want {
			break
		}
	}
	if dataOff < 0 {
		dataOff = min(pos, total)
	}
	return data, dataOff, total, nil
}
