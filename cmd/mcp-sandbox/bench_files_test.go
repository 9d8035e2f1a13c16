package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFileCalls1MiB: read_file and write_file (text and base64) of a
// 1 MiB file over stdio, each against the least any server must do for the
// same call, measured in the same iteration so that a busy machine slows
// both alike (target: at most 3x). The baselines:
//
//   - read: os.ReadFile and json.Marshal of the content;
//   - write: json.Unmarshal of the very request the server gets (and base64
//     decoding), then an atomic write as write_file makes it: a temporary
//     file beside the target, renamed over it.
//
// Each sub-benchmark reports both medians and their ratio, and the ratio of
// the CPU time each used (x-baseline-cpu), which a busy machine disturbs less.
func BenchmarkFileCalls1MiB(b *testing.B) {
	state := b.TempDir()
	r := startRaw(b, []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + b.TempDir(), "MCP_SANDBOX_MAX_READ_BYTES=2MiB"})
	text := strings.Repeat(strings.Repeat("a", 98)+"\n", 1<<20/99)
	write := func(name, content, encoding string) []byte {
		args := map[string]string{"path": name, "content": content}
		if encoding != "" {
			args["encoding"] = encoding
		}
		params, _ := json.Marshal(map[string]any{"name": "write_file", "arguments": args})
		return params
	}
	if line := r.call(b, "tools/call", string(write("big.txt", text, ""))); bytes.Contains(line, []byte(`"isError":true`)) {
		b.Fatalf("write_file: %.300s", line)
	}
	matches, _ := filepath.Glob(filepath.Join(state, "local", "*", "root", "big.txt"))
	if len(matches) != 1 {
		b.Fatal("big.txt not created")
	}
	dir := filepath.Dir(matches[0])

	b.Run("read_file", func(b *testing.B) {
		const call = `{"name":"read_file","arguments":{"path":"big.txt","limit":20000}}`
		baseline := func() {
			data, err := os.ReadFile(matches[0])
			if err != nil {
				b.Fatal(err)
			}
			json.Marshal(map[string]string{"content": string(data)})
		}
		served := func() {
			if line := r.call(b, "tools/call", call); bytes.Contains(line, []byte(`"isError":true`)) || len(line) < 1<<20 {
				b.Fatalf("read_file failed: %.300s", line)
			}
		}
		compare(b, r.cmd.Process.Pid, baseline, served)
	})

	for _, c := range []struct{ name, content, encoding string }{
		{"write_file", text, ""},
		{"write_file_base64", base64.StdEncoding.EncodeToString([]byte(text)), "base64"},
	} {
		b.Run(c.name, func(b *testing.B) {
			params := write("w.txt", c.content, c.encoding)
			baseline := func() {
				var msg struct {
					Arguments struct {
						Path     string `json:"path"`
						Content  string `json:"content"`
						Encoding string `json:"encoding"`
					} `json:"arguments"`
				}
				if err := json.Unmarshal(params, &msg); err != nil {
					b.Fatal(err)
				}
				data := []byte(msg.Arguments.Content)
				if msg.Arguments.Encoding == "base64" {
					var err error
					if data, err = base64.StdEncoding.DecodeString(msg.Arguments.Content); err != nil {
						b.Fatal(err)
					}
				}
				tmp := filepath.Join(dir, ".baseline.tmp")
				if err := os.WriteFile(tmp, data, 0o644); err != nil {
					b.Fatal(err)
				}
				if err := os.Rename(tmp, filepath.Join(dir, "baseline.txt")); err != nil {
					b.Fatal(err)
				}
			}
			served := func() {
				if line := r.call(b, "tools/call", string(params)); bytes.Contains(line, []byte(`"isError":true`)) {
					b.Fatalf("write_file failed: %.300s", line)
				}
			}
			compare(b, r.cmd.Process.Pid, baseline, served)
		})
	}
}

// compare runs baseline and served once per iteration and reports their
// medians and the ratio of the medians; and, since wall time on a shared
// machine depends on who else runs, the CPU time each used: the baseline's
// thread, and the server process (all its threads, GC included).
func compare(b *testing.B, serverPid int, baseline, served func()) {
	b.SetBytes(1 << 20)
	var base, mine []time.Duration
	var baseCPU, servedCPU time.Duration
	for b.Loop() {
		runtime.LockOSThread()
		cpu := threadCPU()
		start := time.Now()
		baseline()
		base = append(base, time.Since(start))
		baseCPU += threadCPU() - cpu
		runtime.UnlockOSThread()
		cpu = processCPU(b, serverPid)
		start = time.Now()
		served()
		mine = append(mine, time.Since(start))
		servedCPU += processCPU(b, serverPid) - cpu
	}
	bm, sm := median(base), median(mine)
	b.ReportMetric(float64(bm.Microseconds())/1000, "ms-baseline")
	b.ReportMetric(float64(sm.Microseconds())/1000, "ms-served")
	b.ReportMetric(float64(sm)/float64(bm), "x-baseline")
	b.ReportMetric(float64(servedCPU)/float64(baseCPU), "x-baseline-cpu")
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the CPU time process pid has used, from /proc.
func processCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 a second).
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
