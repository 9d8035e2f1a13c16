package tools_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/third_party/mcp-go/mcp"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// wireCall is a tools/call as a transport hands it to the server.
func wireCall(id int, name string, args map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": map[string]any{"name": name, "arguments": args}})
	return b
}

func mustHandle(b *testing.B, d *direct, msg []byte) {
	resp, ok := d.s.HandleMessage(d.ctx, msg).(mcp.JSONRPCResponse)
	if !ok || resp.Result.(*mcp.CallToolResult).IsError {
		b.Fatalf("call failed: %v", resp)
	}
}

func binaryContent(n int) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 7)
	}
	return data
}

// Bytes the server allocates per MiB of file written with write_file
// (text and base64) and read with read_file, parsing of the JSON-RPC
// message included. A floor of 1 MiB/MiB is the decoded content itself.
func BenchmarkBytesPerMiB(b *testing.B) {
	const size = 8 << 20
	text := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), size/64)
	cases := []struct {
		name string
		msg  func(i int) []byte
	}{
		{"write_utf8", func(i int) []byte {
			return wireCall(i, "write_file", map[string]any{"path": "f.txt", "content": string(text)})
		}},
		{"write_base64", func(i int) []byte {
			return wireCall(i, "write_file", map[string]any{"path": "f.bin", "content": base64.StdEncoding.EncodeToString(binaryContent(size)), "encoding": "base64"})
		}},
		{"read_text", func(i int) []byte { return wireCall(i, "read_file", map[string]any{"path": "f.txt"}) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			d := newDirect(b, newServer(b, tools.DefaultLimits, nil))
			mustHandle(b, d, wireCall(0, "write_file", map[string]any{"path": "f.txt", "content": string(text)}))
			msg := c.msg(1)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				mustHandle(b, d, msg)
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(size>>20), "B/MiB")
		})
	}
}

// discardWrites measures the server's side of write_file: the driver keeps
// nothing and takes no time.
type discardWrites struct{ providers.Provider }

func (discardWrites) WriteFile(_ context.Context, _, _ string, data []byte, _ fs.FileMode) error {
	runtime.KeepAlive(data)
	return nil
}

// Peak heap while one, and eight, maximal write_file calls (a base64 body
// of the largest file) are handled at once, against their body size.
func BenchmarkWriteFilePeakHeap(b *testing.B) {
	lim := tools.DefaultLimits
	content := base64.StdEncoding.EncodeToString(binaryContent(lim.MaxWriteBytes - 1<<20))
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			wrap := func(p providers.Provider) providers.Provider { return discardWrites{p} }
			d := newDirect(b, newServer(b, lim, wrap)) // calls of one session run side by side
			msgs := make([][]byte, n)
			for i := range msgs {
				msgs[i] = wireCall(1, "write_file", map[string]any{"path": fmt.Sprintf("f%d.bin", i), "content": content, "encoding": "base64"})
			}
			var peak uint64
			for b.Loop() {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				stop := sampleHeap(&peak, base.HeapAlloc)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() { mustHandle(b, d, msgs[i]) })
				}
				wg.Wait()
				stop()
			}
			body := float64(n * len(msgs[0]))
			b.ReportMetric(float64(peak)/(1<<20), "peakMiB")
			b.ReportMetric(float64(peak)/body, "peak/body")
		})
	}
}

// sampleHeap records the heap's highest growth over base until stop.
func sampleHeap(peak *uint64, base uint64) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for !done.Load() {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > *peak {
				*peak = ms.HeapAlloc - base
			}
			time.Sleep(time.Millisecond)
		}
	})
	return func() { done.Store(true); wg.Wait() }
}
