package tools

import (
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// capture keeps the head and the tail of a stream in bounded memory and
// counts everything that went by, whatever the command prints.
type capture struct {
	head  []byte
	tail  []byte // ring buffer once full
	next  int    // write position in tail when full
	total int64
	limit int // head and tail get half each
	// seen is total, readable while the command writes (process_list).
	seen atomic.Int64
}

// written counts the bytes that went by so far; safe during writes.
func (c *capture) written() int64 { return c.seen.Load() }

func newCapture(limit int) *capture {
	if limit < 2 {
		limit = 2
	}
	return &capture{limit: limit}
}

func (c *capture) Write(p []byte) (int, error) {
	n := len(p)
	c.total += int64(n)
	c.seen.Store(c.total)
	if room := c.limit/2 - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	tailCap := c.limit - c.limit/2
	for len(p) > 0 {
		if len(c.tail) < tailCap {
			k := min(tailCap-len(c.tail), len(p))
			c.tail = append(c.tail, p[:k]...)
			p = p[k:]
			continue
		}
		if len(p) >= tailCap { // only the last tailCap bytes can survive
			p = p[len(p)-tailCap:]
		}
		k := copy(c.tail[c.next:], p)
		if k < len(p) {
			copy(c.tail, p[k:])
		}
		c.next = (c.next + len(p)) % tailCap
		p = nil
	}
	return n, nil
}

// tailBytes returns the tail in order.
func (c *capture) tailBytes() []byte {
	if c.next == 0 {
		return c.tail
	}
	out := make([]byte, 0, len(c.tail))
	out = append(out, c.tail[c.next:]...)
	return append(out, c.tail[:c.next]...)
}

// Truncation says what a capped stream left out.
type Truncation struct {
	TotalBytes    int64 `json:"total_bytes" jsonschema_description:"Bytes the stream produced in all."`
	DroppedBytes  int64 `json:"dropped_bytes" jsonschema_description:"Bytes left out between the head and the tail shown."`
	DroppedOffset int64 `json:"dropped_offset" jsonschema_description:"Byte offset of the first byte left out. When the result has a process_id, process_output from this offset reads what was left out."`
}

// text renders the capture as valid UTF-8: the head, a marker naming how
// many bytes were dropped, and the tail. lossy reports bytes that were not
// UTF-8 (shown as U+FFFD).
func (c *capture) text() (s string, trunc *Truncation, lossy bool) {
	return headTail(c.head, c.tailBytes(), c.total)
}

// headTail renders a stream of total bytes of which head and tail were kept.
func headTail(head, tail []byte, total int64) (s string, trunc *Truncation, lossy bool) {
	kept := int64(len(head) + len(tail))
	if kept >= total {
		b := append(append([]byte{}, head...), tail...)
		return toValid(b)
	}
	// Cut at rune boundaries so the cut itself adds no U+FFFD.
	head = trimIncompleteEnd(head)
	tail = trimIncompleteStart(tail)
	dropped := total - int64(len(head)) - int64(len(tail))
	h, lh := toValidLossy(head)
	t, lt := toValidLossy(tail)
	marker := "\n[... " + strconv.FormatInt(dropped, 10) + " bytes dropped ...]\n"
	return h + marker + t, &Truncation{TotalBytes: total, DroppedBytes: dropped, DroppedOffset: int64(len(head))}, lh || lt
}

func toValid(b []byte) (string, *Truncation, bool) {
	s, lossy := toValidLossy(b)
	return s, nil, lossy
}

func toValidLossy(b []byte) (string, bool) {
	if utf8.Valid(b) {
		return string(b), false
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), true
}

func trimIncompleteEnd(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		r := b[len(b)-i]
		if r < utf8.RuneSelf {
			return b // ASCII ends cleanly
		}
		if utf8.RuneStart(r) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}

func trimIncompleteStart(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && i < len(b); i++ {
		if utf8.RuneStart(b[i]) {
			return b[i:]
		}
	}
	return b
}
