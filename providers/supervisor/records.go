package supervisor

import (
	"bufio"
	"bytes"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

func oneRecord(out []byte, proc string) (providers.ProcessInfo, error) {
	recs := parseRecords(out)
	if len(recs) != 1 || recs[0].ID != proc {
		return providers.ProcessInfo{}, providers.Errorf(providers.ErrUnavailable, "process %s: unexpected answer from the sandbox: %q", proc, truncate(string(out)))
	}
	return recs[0], nil
}

// parseRead splits a read script's answer into the record and the data;
// complete is false when fewer bytes came than announced.
func parseRead(out []byte, proc string, req providers.OutputRequest) (providers.Output, bool, error) {
	var header []byte
	var tail []byte
	for rest := out; len(rest) > 0; {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		if bytes.HasPrefix(line, []byte("data ")) || bytes.HasPrefix(line, []byte("pastend ")) {
			tail = rest
			break
		}
		header = append(header, line...)
		header = append(header, '\n')
		rest = after
	}
	in, err := oneRecord(header, proc)
	if err != nil {
		return providers.Output{}, false, err
	}
	line, data, _ := bytes.Cut(tail, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) == 2 && f[0] == "pastend" {
		return providers.Output{}, true, providers.Errorf(providers.ErrInvalidArgument,
			"offset %d is past the end of %s, which has %s bytes so far", req.Offset, req.Stream, f[1])
	}
	if len(f) != 4 || f[0] != "data" {
		return providers.Output{}, false, providers.Errorf(providers.ErrUnavailable, "read output of process %s: unexpected answer from the sandbox: %q", proc, truncate(string(out)))
	}
	from, err1 := strconv.ParseInt(f[1], 10, 64)
	total, err2 := strconv.ParseInt(f[2], 10, 64)
	n, err3 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil || n > req.Limit || from < req.Offset {
		return providers.Output{}, false, providers.Errorf(providers.ErrUnavailable, "read output of process %s: unexpected answer from the sandbox: %q", proc, line)
	}
	if len(data) != n {
		return providers.Output{}, false, nil
	}
	return providers.Output{Data: data, Offset: from, Skipped: from - req.Offset, Total: total, Process: in}, true, nil
}

// procRecord accumulates one process's lines.
type procRecord struct {
	info     providers.ProcessInfo
	up0, up1 int64
	open     bool
	closed   bool
	exited   bool
}

// parseRecords reads the records the scripts print (see procPrelude's
// desc and segs). Everything in them comes from inside the sandbox, so
// anything malformed is skipped rather than trusted.
func parseRecords(out []byte) []providers.ProcessInfo {
	var order []string
	recs := map[string]*procRecord{}
	var cur *procRecord
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), maxProcScriptOutput)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "proc":
			if !providers.ValidProcessID(rest) {
				cur = nil
				continue
			}
			cur = &procRecord{info: providers.ProcessInfo{ID: rest, ExitCode: -1}}
			if _, dup := recs[rest]; !dup {
				order = append(order, rest)
			}
			recs[rest] = cur
		case "spec":
			if cur == nil {
				continue
			}
			f := strings.SplitN(rest, " ", 7)
			if len(f) != 7 {
				cur = nil
				continue
			}
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			cur.info.StartedAt = time.Unix(0, ns).UTC()
			cur.open = f[1] == "1"
			cur.info.Command, _ = strconv.Unquote(f[6])
		case "state":
			if f := strings.Fields(rest); cur != nil && len(f) >= 4 {
				cur.up0, _ = strconv.ParseInt(f[3], 10, 64)
			}
		case "running":
			if cur != nil {
				cur.info.Running = true
			}
		case "stdinclosed":
			if cur != nil {
				cur.closed = true
			}
		case "exit":
			if f := strings.Fields(rest); cur != nil && len(f) == 3 {
				code, err := strconv.Atoi(f[0])
				if err != nil {
					continue
				}
				cur.exited = true
				cur.info.ExitCode = code
				cur.info.TimedOut = f[1] == "1"
				cur.up1, _ = strconv.ParseInt(f[2], 10, 64)
			}
		case "seg":
			// seg <base>/<n>/<stream>.<start> <size>
			name, size, ok := strings.Cut(rest, " ")
			n, err := strconv.ParseInt(size, 10, 64)
			if !ok || err != nil {
				continue
			}
			file := path.Base(name)
			stream, startText, _ := strings.Cut(file, ".")
			start, err := strconv.ParseInt(startText, 10, 64)
			r := recs[path.Base(path.Dir(name))]
			if err != nil || r == nil {
				continue
			}
			switch stream {
			case string(providers.Stdout):
				r.info.StdoutBytes = max(r.info.StdoutBytes, start+n)
			case string(providers.Stderr):
				r.info.StderrBytes = max(r.info.StderrBytes, start+n)
			}
		}
	}
	infos := make([]providers.ProcessInfo, 0, len(order))
	for _, id := range order {
		r := recs[id]
		if r == nil || r.info.StartedAt.IsZero() {
			continue
		}
		if r.exited {
			// Both ends come from the container's uptime clock, so the
			// duration is exact whatever the two hosts' clocks say.
			r.info.EndedAt = r.info.StartedAt.Add(time.Duration(max(r.up1-r.up0, 0)) * 10 * time.Millisecond)
		}
		r.info.StdinOpen = r.info.Running && r.open && !r.closed
		infos = append(infos, r.info)
	}
	return infos
}
