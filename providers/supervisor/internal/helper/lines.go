package helper

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
)

// A channel whose transport carries only text (an API that takes a
// command's stdin and gives its output as JSON strings) runs serve with
// "-enc b64": each write either way travels as one line of standard base64,
// and the frames are the bytes those lines decode to.

// MaxLine bounds one base64 line: a frame of MaxFrame bytes and its header.
const MaxLine = (MaxFrame+9+2)/3*4 + 2

// LineWriter writes each Write as one base64 line, in a single write.
type LineWriter struct{ W io.Writer }

func (l LineWriter) Write(b []byte) (int, error) {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(b))+1)
	base64.StdEncoding.Encode(out, b)
	out[len(out)-1] = '\n'
	if _, err := l.W.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close closes the underlying writer when it is a Closer.
func (l LineWriter) Close() error {
	if c, ok := l.W.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// ErrLine is a line that is not base64, or longer than MaxLine.
var ErrLine = errors.New("the channel carried a line that is not base64 or is too long")

// LineReader reads the bytes base64 lines decode to. Empty lines and a
// carriage return before the newline are allowed; anything else that is not
// base64 ends it with ErrLine.
type LineReader struct {
	r    *bufio.Reader
	line []byte
	buf  []byte // decoded, not yet read
}

// NewLineReader reads base64 lines from r.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10)}
}

func (l *LineReader) Read(p []byte) (int, error) {
	for len(l.buf) == 0 {
		l.line = l.line[:0]
		for {
			chunk, err := l.r.ReadSlice('\n')
			l.line = append(l.line, chunk...)
			if len(l.line) > MaxLine {
				return 0, ErrLine
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if err == io.EOF && len(l.line) > 0 {
					return 0, io.ErrUnexpectedEOF
				}
				return 0, err
			}
			break
		}
		text := l.line[:len(l.line)-1]
		if n := len(text); n > 0 && text[n-1] == '\r' {
			text = text[:n-1]
		}
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, err := base64.StdEncoding.Decode(dec, text)
		if err != nil {
			return 0, ErrLine
		}
		l.buf = dec[:n]
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}
