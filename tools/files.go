package tools

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/invopop/jsonschema"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"
	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/server"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

const defaultReadLines = 2000

type readFileArgs struct {
	Path      string `json:"path" jsonschema_description:"File to read, relative to the sandbox workdir or absolute."`
	SandboxID string `json:"sandbox_id,omitempty" jsonschema_description:"Sandbox to read from. Omit to use the current sandbox."`
	StartLine int    `json:"start_line,omitempty" jsonschema:"minimum=1,maximum=2147483647" jsonschema_description:"First line to return, 1-based. Default 1."`
	Limit     int    `json:"limit,omitempty" jsonschema:"minimum=1,maximum=2147483647" jsonschema_description:"How many lines to return. Default 2000."`
}

// ReadFileResult is what read_file returns.
type ReadFileResult struct {
	Path       string `json:"path"`
	Size       int64  `json:"size" jsonschema_description:"File size in bytes."`
	Encoding   string `json:"encoding" jsonschema:"enum=utf-8,enum=base64" jsonschema_description:"utf-8: content is text. base64: the file is binary and content is its base64 encoding."`
	MimeType   string `json:"mime_type"`
	Content    string `json:"content"`
	TotalLines int    `json:"total_lines,omitempty" jsonschema_description:"Lines in the whole file (text only)."`
	StartLine  int    `json:"start_line,omitempty" jsonschema_description:"First line returned, 1-based (text only)."`
	EndLine    int    `json:"end_line,omitempty" jsonschema_description:"Last line returned (text only)."`
	Truncated  bool   `json:"truncated" jsonschema_description:"True when lines after end_line exist: read again with start_line=end_line+1."`
}

func (h *handlers) readFile() server.ServerTool {
	tool := newTool("read_file", "Read file",
		"Read a file from a sandbox. Text comes back as UTF-8 lines (start_line and limit page through large files; "+
			"total_lines says how many there are), each line prefixed with its number and a tab in the text shown (as cat -n does; not part of the file, so leave it out of edit_file's old_string), "+
			"while the structured content keeps the raw text; binary files come back base64-encoded with encoding \"base64\"; "+
			"images also come back as image content you can see. "+
			fmt.Sprintf("Files over %s cannot be read whole: use run_command with head, tail, sed -n or grep.", sizeText(h.lim.MaxReadBytes)),
		readFileArgs{}, ReadFileResult{},
		behaviour{ReadOnly: true, Idempotent: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, h.handleReadFile)}
}

func (h *handlers) handleReadFile(ctx context.Context, sid string, a readFileArgs) (*mcp.CallToolResult, error) {
	if a.Path == "" {
		return nil, invalid("path is required")
	}
	p, id, err := h.m.Resolve(ctx, sid, a.SandboxID)
	if err != nil {
		return nil, err
	}
	data, size, err := h.readWhole(ctx, p, id, a.Path)
	if err != nil {
		return nil, err
	}
	out := ReadFileResult{Path: a.Path, Size: size, MimeType: http.DetectContentType([]byte(data[:min(len(data), 512)]))}
	if !isText(data) {
		if len(data) > h.lim.MaxReturnBytes {
			return nil, invalid("%s is a binary file of %s (%s), over the %s read_file returns; inspect it with run_command (file, xxd | head, ...)", a.Path, sizeText(int64(size)), out.MimeType, sizeText(int64(h.lim.MaxReturnBytes)))
		}
		out.Encoding, out.Content = "base64", base64.StdEncoding.EncodeToString([]byte(data))
		text := fmt.Sprintf("%s: %d bytes of binary data (%s), base64-encoded in structured content.", printable(a.Path), size, out.MimeType)
		if strings.HasPrefix(out.MimeType, "image/") {
			return result(out, text, mcp.NewImageContent(out.Content, out.MimeType)), nil
		}
		return result(out, text+"\n"+out.Content), nil
	}
	out.Encoding = "utf-8"
	// Lines are walked in the file: a slice of them would cost more than the
	// file (16 bytes per short line).
	total := strings.Count(data, "\n")
	if len(data) > 0 && data[len(data)-1] != '\n' {
		total++
	}
	out.TotalLines = total
	start := max(a.StartLine, 1)
	limit := a.Limit
	if limit == 0 {
		limit = defaultReadLines
	}
	if start > total && !(start == 1 && total == 0) {
		return nil, invalid("start_line %d is past the end of %s, which has %d lines", start, a.Path, total)
	}
	pos := 0
	for range start - 1 {
		pos += strings.IndexByte(data[pos:], '\n') + 1
	}
	from, end := pos, start-1
	for end-(start-1) < limit && pos < len(data) {
		next := len(data)
		if i := strings.IndexByte(data[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		if next-from > h.lim.MaxReturnBytes && end >= start {
			break // keep the result inside the byte budget; the caller pages on
		}
		pos, end = next, end+1
	}
	out.Content = data[from:pos]
	out.Truncated = end < total
	if total > 0 {
		out.StartLine, out.EndLine = start, end
	}
	// The text is numbered as coding agents expect (cat -n), so edit_file
	// errors and compiler messages that cite lines can be matched; the
	// structured content keeps the raw text for tools that need the bytes.
	text := numberLines(out.Content, start)
	if out.Truncated {
		text += fmt.Sprintf("\n[lines %d-%d of %d shown; read on with start_line=%d]", start, end, total, end+1)
	}
	return result(out, text), nil
}

// JSONSizeHint is about the size of r's JSON encoding.
func (r ReadFileResult) JSONSizeHint() int {
	return 256 + len(r.Path) + len(r.Content) + len(r.Content)/16
}

// AppendJSON appends what json.Marshal(r) returns (TestReadFileResultJSON
// holds the two together). As an mcp.JSONAppender, read_file's structured
// content is encoded once, straight into the response: through
// encoding/json, a file's content was escaped into a buffer grown by
// doubling, then scanned again to be copied.
func (r ReadFileResult) AppendJSON(b []byte) []byte {
	b = mcp.AppendJSONString(append(b, `{"path":`...), r.Path)
	b = strconv.AppendInt(append(b, `,"size":`...), r.Size, 10)
	b = mcp.AppendJSONString(append(b, `,"encoding":`...), r.Encoding)
	b = mcp.AppendJSONString(append(b, `,"mime_type":`...), r.MimeType)
	b = mcp.AppendJSONString(append(b, `,"content":`...), r.Content)
	for _, f := range []struct {
		name string
		n    int
	}{{"total_lines", r.TotalLines}, {"start_line", r.StartLine}, {"end_line", r.EndLine}} {
		if f.n != 0 {
			b = strconv.AppendInt(append(append(append(b, `,"`...), f.name...), `":`...), int64(f.n), 10)
		}
	}
	b = strconv.AppendBool(append(b, `,"truncated":`...), r.Truncated)
	return append(b, '}')
}

// readWhole reads a file up to the size cap, as a string: a strings.Builder
// of the stated size is neither zeroed first nor copied to become the
// string, which the result then holds as it is.
func (h *handlers) readWhole(ctx context.Context, p *providers.Backend, id, path string) (string, int64, error) {
	rc, fi, err := p.ReadFile(ctx, id, path)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	if fi.Size > h.lim.MaxReadBytes {
		return "", 0, invalid("%s is %s, over the %s read limit; use run_command with head, tail, sed -n or grep", path, sizeText(fi.Size), sizeText(h.lim.MaxReadBytes))
	}
	// The stated size and a byte to see growth; a file that grew is read on.
	var b strings.Builder
	b.Grow(int(max(fi.Size, 0)) + 1)
	if _, err := io.Copy(&b, io.LimitReader(rc, h.lim.MaxReadBytes+1)); err != nil {
		return "", 0, providers.Errorf(providers.ErrUnavailable, "read %s: %w", path, err)
	}
	if int64(b.Len()) > h.lim.MaxReadBytes {
		return "", 0, invalid("%s grew past the %s read limit while being read", path, sizeText(h.lim.MaxReadBytes))
	}
	return b.String(), int64(b.Len()), nil
}

// isText: valid UTF-8 without NUL bytes.
func isText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// splitLines keeps each line's newline, so joining lines gives the file back.
func splitLines(s string) []string {
	var lines []string
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

type writeFileArgs struct {
	Path      string      `json:"path" jsonschema_description:"File to write, relative to the sandbox workdir or absolute. Missing parent directories are created."`
	Content   fileContent `json:"content" jsonschema_description:"The whole new content of the file."`
	Encoding  string      `json:"encoding,omitempty" jsonschema:"enum=utf-8,enum=base64" jsonschema_description:"utf-8 (default) or base64 for binary content."`
	SandboxID string      `json:"sandbox_id,omitempty" jsonschema_description:"Sandbox to write to. Omit to use the current sandbox."`
}

// fileContent is write_file's content, decoded from its JSON string
// straight into the bytes the driver takes: through a string it would be
// copied twice, and a maximal write_file is the largest thing a call holds.
type fileContent []byte

func (c *fileContent) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*c = nil
		return nil
	}
	s, ok := unquoteJSON(b)
	if !ok {
		return argumentError{fmt.Sprintf("argument \"content\" must be a string, not %.20s", b)}
	}
	*c = s
	return nil
}

// JSONSchemaExtend keeps the schema a plain string: []byte would reflect
// as base64-encoded.
func (fileContent) JSONSchemaExtend(s *jsonschema.Schema) { s.ContentEncoding = "" }

type writeFileResult struct {
	Path         string `json:"path"`
	BytesWritten int    `json:"bytes_written"`
	Created      bool   `json:"created" jsonschema_description:"True when the file did not exist before."`
}

func (h *handlers) writeFile() server.ServerTool {
	tool := newTool("write_file", "Write file",
		"Create or overwrite a file in a sandbox with the given content (atomically: readers never see half a file). "+
			"Parent directories are created. An existing file keeps its permissions. Use edit_file to change part of a file.",
		writeFileArgs{}, writeFileResult{},
		behaviour{Destructive: true, Idempotent: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a writeFileArgs) (*mcp.CallToolResult, error) {
		if a.Path == "" {
			return nil, invalid("path is required")
		}
		var data []byte
		switch a.Encoding {
		case "", "utf-8", "utf8":
			data = a.Content
		case "base64":
			data = make([]byte, base64.StdEncoding.DecodedLen(len(a.Content)))
			n, err := base64.StdEncoding.Decode(data, a.Content)
			if err != nil {
				return nil, invalid("content is not valid base64 (%v); send standard base64 with padding, or encoding utf-8 for text", err)
			}
			data, a.Content = data[:n], nil // the encoded copy can go
		default:
			return nil, invalid("encoding %q is not supported; use utf-8 or base64", a.Encoding)
		}
		if len(data) > h.lim.MaxWriteBytes {
			return nil, invalid("content is %s, over the %s write limit", sizeText(int64(len(data))), sizeText(int64(h.lim.MaxWriteBytes)))
		}
		p, id, err := h.m.Resolve(ctx, sid, a.SandboxID)
		if err != nil {
			return nil, err
		}
		_, statErr := p.Stat(ctx, id, a.Path)
		if err := p.WriteFile(ctx, id, a.Path, data, 0); err != nil {
			return nil, err
		}
		out := writeFileResult{Path: a.Path, BytesWritten: len(data), Created: statErr != nil}
		return result(out, fmt.Sprintf("Wrote %s to %s.", sizeText(int64(len(data))), printable(a.Path))), nil
	})}
}

type editFileArgs struct {
	Path       string `json:"path" jsonschema_description:"File to edit, relative to the sandbox workdir or absolute."`
	OldString  string `json:"old_string" jsonschema_description:"Exact text to replace, including whitespace and indentation. Must match exactly once unless replace_all is true."`
	NewString  string `json:"new_string" jsonschema_description:"Text to put in its place."`
	ReplaceAll bool   `json:"replace_all,omitempty" jsonschema_description:"Replace every occurrence instead of requiring exactly one."`
	SandboxID  string `json:"sandbox_id,omitempty" jsonschema_description:"Sandbox holding the file. Omit to use the current sandbox."`
}

type editFileResult struct {
	Path         string `json:"path"`
	Replacements int    `json:"replacements"`
	Diff         string `json:"diff" jsonschema_description:"Unified diff of the change."`
}

func (h *handlers) editFile() server.ServerTool {
	tool := newTool("edit_file", "Edit file",
		"Replace exact text in a text file and return a unified diff of the change. old_string must match exactly once "+
			"(include surrounding lines to make it unique), or set replace_all to change every occurrence. "+
			"No match, or several without replace_all, is an error that leaves the file unchanged.",
		editFileArgs{}, editFileResult{},
		behaviour{Destructive: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a editFileArgs) (*mcp.CallToolResult, error) {
		if a.Path == "" {
			return nil, invalid("path is required")
		}
		if a.OldString == "" {
			return nil, invalid("old_string is empty; to write a whole file use write_file")
		}
		if a.OldString == a.NewString {
			return nil, invalid("old_string and new_string are the same; nothing to change")
		}
		p, id, err := h.m.Resolve(ctx, sid, a.SandboxID)
		if err != nil {
			return nil, err
		}
		data, _, err := h.readWhole(ctx, p, id, a.Path)
		if err != nil {
			return nil, err
		}
		if !isText(data) {
			return nil, invalid("%s is not a UTF-8 text file; edit_file only edits text", a.Path)
		}
		old := data
		at := matchOffsets(old, a.OldString)
		switch {
		case len(at) == 0:
			return nil, invalid("old_string was not found in %s; read the file again and copy the text exactly, including whitespace", a.Path)
		case len(at) > 1 && !a.ReplaceAll:
			return nil, invalid("old_string matches %d times in %s (at line:column %s); include more surrounding text to make it unique, or set replace_all", len(at), a.Path, positions(old, at))
		}
		updated := strings.ReplaceAll(old, a.OldString, a.NewString)
		if err := p.WriteFile(ctx, id, a.Path, []byte(updated), 0); err != nil {
			return nil, err
		}
		diff := unifiedDiff(a.Path, old, at, len(a.OldString), a.NewString)
		out := editFileResult{Path: a.Path, Replacements: len(at), Diff: diff}
		return result(out, diff), nil
	})}
}

// numberLines prefixes each line of s with its number, from first, as
// cat -n does: the number right-aligned in six columns, then a tab.
func numberLines(s string, first int) string {
	// Appended by hand into one buffer sized up front: through fmt, a 1 MiB
	// read spent more on numbering than on reading the file. A Builder's
	// buffer is not zeroed first, nor copied to become the string.
	lines := strings.Count(s, "\n") + 1
	var b strings.Builder
	b.Grow(len(s) + lines*(len(strconv.Itoa(first+lines))+6))
	var digits [20]byte
	for n := first; s != ""; n++ {
		line, rest, found := strings.Cut(s, "\n")
		num := strconv.AppendInt(digits[:0], int64(n), 10)
		for range 6 - len(num) {
			b.WriteByte(' ')
		}
		b.Write(num)
		b.WriteByte('\t')
		b.WriteString(line)
		if found && rest != "" {
			b.WriteByte('\n')
		}
		s = rest
	}
	return b.String()
}

// matchOffsets finds non-overlapping occurrences, as strings.ReplaceAll does.
func matchOffsets(s, sub string) []int {
	var at []int
	for i := 0; ; {
		j := strings.Index(s[i:], sub)
		if j < 0 {
			return at
		}
		at = append(at, i+j)
		i += j + len(sub)
	}
}

// positions writes match offsets as line:column (both 1-based, the column
// in characters), so three matches on one line read as three places.
func positions(s string, at []int) string {
	var parts []string
	for i, off := range at {
		if i == 10 {
			parts = append(parts, "...")
			break
		}
		lineStart := strings.LastIndexByte(s[:off], '\n') + 1
		parts = append(parts, fmt.Sprintf("%d:%d", strings.Count(s[:off], "\n")+1, utf8.RuneCountInString(s[lineStart:off])+1))
	}
	return strings.Join(parts, ", ")
}

type listFilesArgs struct {
	Path      string `json:"path,omitempty" jsonschema_description:"Directory to list, relative to the sandbox workdir or absolute. Default: the workdir."`
	Depth     int    `json:"depth,omitempty" jsonschema:"minimum=1,maximum=10" jsonschema_description:"How many levels to descend (1 = direct children). Default 1."`
	SandboxID string `json:"sandbox_id,omitempty" jsonschema_description:"Sandbox to list. Omit to use the current sandbox."`
}

// FileEntry is one listed path.
type FileEntry struct {
	Path    string    `json:"path" jsonschema_description:"Relative to the listed directory."`
	Type    string    `json:"type" jsonschema:"enum=file,enum=dir,enum=symlink,enum=other"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

type listFilesResult struct {
	Path      string      `json:"path"`
	Entries   []FileEntry `json:"entries"`
	Truncated bool        `json:"truncated" jsonschema_description:"True when more entries exist than were returned: list a subdirectory or use a smaller depth."`
}

func (h *handlers) listFiles() server.ServerTool {
	tool := newTool("list_files", "List files",
		fmt.Sprintf("List a directory in a sandbox: each entry's path, type (file, dir, symlink, other), size and modification time, in path order. "+
			"depth descends into subdirectories. At most %d entries are returned; truncated says when there were more.", h.lim.MaxListEntries),
		listFilesArgs{}, listFilesResult{},
		behaviour{ReadOnly: true, Idempotent: true}.annotation())
	return server.ServerTool{Tool: tool, Handler: typed(h, func(ctx context.Context, sid string, a listFilesArgs) (*mcp.CallToolResult, error) {
		depth := max(a.Depth, 1)
		path := a.Path
		if path == "" {
			path = "."
		}
		p, id, err := h.m.Resolve(ctx, sid, a.SandboxID)
		if err != nil {
			return nil, err
		}
		ents, truncated, err := p.ListFiles(ctx, id, path, depth, h.lim.MaxListEntries)
		if err != nil {
			return nil, err
		}
		out := listFilesResult{Path: path, Entries: make([]FileEntry, 0, len(ents)), Truncated: truncated}
		var b strings.Builder
		for _, e := range ents {
			out.Entries = append(out.Entries, FileEntry{Path: e.Path, Type: string(e.Type), Size: e.Size, ModTime: e.ModTime})
			name := e.Path
			if e.Type == providers.TypeDir {
				name += "/"
			}
			name = printable(name)
			fmt.Fprintf(&b, "%-7s %10d  %s  %s\n", e.Type, e.Size, e.ModTime.Format("2006-01-02 15:04"), name)
		}
		if len(ents) == 0 {
			b.WriteString("(empty directory)\n")
		}
		if truncated {
			fmt.Fprintf(&b, "[truncated at %d entries; list a subdirectory or lower depth]\n", len(ents))
		}
		return result(out, strings.TrimSuffix(b.String(), "\n")), nil
	})}
}
