package tools

import (
	"fmt"
	"sort"
	"strings"
)

const diffContext = 3

// block is one changed run of whole lines: old lines [from, to) become repl.
type block struct {
	from, to int
	repl     []string
}

// unifiedDiff renders the edit that replaced old[at[i]:at[i]+n] with repl
// for every i. The changed lines are known from the match offsets, so no
// general diff algorithm is needed: output is exact and linear in size.
func unifiedDiff(path, old string, at []int, n int, repl string) string {
	lines := splitLines(old)
	starts := make([]int, len(lines)+1) // byte offset where each line starts
	for i, l := range lines {
		starts[i+1] = starts[i] + len(l)
	}
	lineOf := func(off int) int { return sort.SearchInts(starts, off+1) - 1 }

	var blocks []block
	for i := 0; i < len(at); {
		from, to := lineOf(at[i]), lineOf(at[i]+n-1)+1
		j := i + 1
		for j < len(at) && lineOf(at[j]) < to { // matches sharing a line
			to = lineOf(at[j]+n-1) + 1
			j++
		}
		seg := old[starts[from]:starts[to]]
		blocks = append(blocks, block{from, to, splitLines(strings.ReplaceAll(seg, old[at[i]:at[i]+n], repl))})
		i = j
	}

	var b strings.Builder
	name := strings.TrimPrefix(path, "/") // quoted as git does when it holds control characters
	fmt.Fprintf(&b, "--- %s\n+++ %s\n", printable("a/"+name), printable("b/"+name))
	shift := 0 // new line number minus old line number before the current hunk
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j].from-blocks[j-1].to <= 2*diffContext {
			j++
		}
		hs := max(blocks[i].from-diffContext, 0)
		he := min(blocks[j-1].to+diffContext, len(lines))
		var body strings.Builder
		oldCount, newCount := 0, 0
		pos := hs
		for _, bl := range blocks[i:j] {
			for ; pos < bl.from; pos++ {
				writeLine(&body, ' ', lines[pos])
				oldCount++
				newCount++
			}
			for ; pos < bl.to; pos++ {
				writeLine(&body, '-', lines[pos])
				oldCount++
			}
			for _, l := range bl.repl {
				writeLine(&body, '+', l)
				newCount++
			}
		}
		for ; pos < he; pos++ {
			writeLine(&body, ' ', lines[pos])
			oldCount++
			newCount++
		}
		fmt.Fprintf(&b, "@@ -%s +%s @@\n", hunkRange(hs, oldCount), hunkRange(hs+shift, newCount))
		b.WriteString(body.String())
		for _, bl := range blocks[i:j] {
			shift += len(bl.repl) - (bl.to - bl.from)
		}
		i = j
	}
	return b.String()
}

func hunkRange(start, count int) string {
	if count == 0 {
		return fmt.Sprintf("%d,0", start) // an empty range names the line before it
	}
	if count == 1 {
		return fmt.Sprint(start + 1)
	}
	return fmt.Sprintf("%d,%d", start+1, count)
}

func writeLine(b *strings.Builder, prefix byte, line string) {
	b.WriteByte(prefix)
	b.WriteString(line)
	if !strings.HasSuffix(line, "\n") {
		b.WriteString("\n\\ No newline at end of file\n")
	}
}
