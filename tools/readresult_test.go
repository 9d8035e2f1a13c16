package tools

import (
	"encoding/json"
	"strings"
	"testing"
)

// read_file's structured content is encoded by hand, once; it must be
// exactly what encoding/json makes of the result, whatever the file holds.
func TestReadFileResultJSON(t *testing.T) {
	for _, r := range []ReadFileResult{
		{},
		{Path: "a.txt", Size: 3, Encoding: "utf-8", MimeType: "text/plain; charset=utf-8", Content: "a\n", TotalLines: 1, StartLine: 1, EndLine: 1},
		{Path: "<dir>/\"q\"&\u2028.txt", Size: 1 << 40, Encoding: "utf-8", Content: "\x00\t\r\n\\ é漢 \xff <script>", TotalLines: 9, StartLine: 3, EndLine: 4, Truncated: true},
		{Path: "b.bin", Size: 2, Encoding: "base64", MimeType: "application/octet-stream", Content: "AAE="},
		{Path: "big", Content: strings.Repeat("line of text\n", 10000), TotalLines: 10000, StartLine: 1, EndLine: 10000},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON([]byte("x")); string(got) != "x"+string(want) {
			t.Errorf("%.100s:\n got  %.300s\n want %.300s", r.Path, got[1:], want)
		}
	}
}
