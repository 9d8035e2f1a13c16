package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// smallCalls are what the throughput benchmarks repeat, in turn: the calls
// an agent makes most, each small.
var smallCalls = []string{
	`{"name":"run_command","arguments":{"command":"true"}}`,
	`{"name":"write_file","arguments":{"path":"small.txt","content":"` + strings.Repeat("x", 1000) + `\n"}}`,
	`{"name":"read_file","arguments":{"path":"small.txt"}}`,
}

// BenchmarkThroughput: N clients at once, each in its own MCP session over
// streamable HTTP (N = 1, 10, 100), cycling through run_command true and a
// small write_file and read_file; and the same calls over stdio, one
// session, with 1 and 10 calls in flight. It reports calls/s and the p50 and
// p99 latency of a call, so the transport's cost is known: over HTTP each
// call is a POST on a kept-alive connection, behind the bearer token check.
func BenchmarkThroughput(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("http/sessions=%d", n), func(b *testing.B) {
			url := startBenchHTTP(b)
			clients := make([]*httpSession, n)
			for i := range clients {
				clients[i] = newHTTPSession(b, url, n)
				clients[i].call(b, smallCalls[0]) // creates its sandbox
				clients[i].call(b, smallCalls[1]) // and the file read_file reads
			}
			runConcurrently(b, n, func(worker, i int) { clients[worker].call(b, smallCalls[i%len(smallCalls)]) })
		})
	}
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("stdio/in-flight=%d", n), func(b *testing.B) {
			c := startPipelined(b)
			c.call(b, smallCalls[0])
			c.call(b, smallCalls[1])
			runConcurrently(b, n, func(_, i int) { c.call(b, smallCalls[i%len(smallCalls)]) })
		})
	}
}

// runConcurrently makes b.N calls from n workers and reports calls/s and
// the latency percentiles.
func runConcurrently(b *testing.B, n int, call func(worker, i int)) {
	var next atomic.Int64
	latencies := make([][]time.Duration, n)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) || b.Failed() {
					return
				}
				t := time.Now()
				call(w, int(i))
				latencies[w] = append(latencies[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(latencies...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(all[min(len(all)-1, len(all)*99/100)].Microseconds())/1000, "ms-p99")
}

const benchToken = "bench-token-0123456789abcdef"

func startBenchHTTP(b *testing.B) string {
	b.Helper()
	return startBinary(b, []string{"MCP_SANDBOX_AUTH_TOKEN=" + benchToken},
		"--http", "127.0.0.1:0", "--max-sessions", "0", "--max-sessions-per-client", "0")
}

// httpSession is one MCP session over streamable HTTP, with raw requests.
type httpSession struct {
	url, id string
	client  *http.Client
	seq     atomic.Int64
}

func newHTTPSession(b *testing.B, url string, conns int) *httpSession {
	b.Helper()
	s := &httpSession{url: url, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}}
	b.Cleanup(s.client.CloseIdleConnections)
	resp := s.post(b, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	s.id = resp.Header.Get("Mcp-Session-Id")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if s.id == "" {
		b.Fatal("initialize returned no session ID")
	}
	resp = s.post(b, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	resp.Body.Close()
	return s
}

func (s *httpSession) post(b *testing.B, body string) *http.Response {
	req, _ := http.NewRequest(http.MethodPost, s.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+benchToken)
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		b.Error(err)
		return &http.Response{Body: io.NopCloser(strings.NewReader(""))}
	}
	return resp
}

func (s *httpSession) call(b *testing.B, params string) {
	id := s.seq.Add(1)
	resp := s.post(b, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%s}`, id, params))
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"result"`)) || bytes.Contains(body, []byte(`"isError":true`)) {
		b.Errorf("call over HTTP: %v %d %.300s", err, resp.StatusCode, body) // calls run off the benchmark's goroutine
	}
}

// pipelined is one stdio session with calls in flight at once, answers
// matched to calls by id.
type pipelined struct {
	mu      sync.Mutex
	in      io.Writer
	seq     int
	waiting map[string]chan []byte
}

func startPipelined(b *testing.B) *pipelined {
	b.Helper()
	r := startRaw(b, []string{"MCP_SANDBOX_STATE_DIR=" + b.TempDir(), "HOME=" + b.TempDir()})
	p := &pipelined{in: r.in, seq: r.id, waiting: map[string]chan []byte{}}
	go func() {
		for {
			line, err := r.out.ReadBytes('\n')
			if err != nil {
				return
			}
			var head struct{ ID json.RawMessage }
			if json.Unmarshal(line, &head) != nil || head.ID == nil {
				continue // a notification
			}
			p.mu.Lock()
			ch := p.waiting[string(head.ID)]
			delete(p.waiting, string(head.ID))
			p.mu.Unlock()
			if ch != nil {
				ch <- line
			}
		}
	}()
	return p
}

func (p *pipelined) call(b *testing.B, params string) {
	ch := make(chan []byte, 1)
	p.mu.Lock()
	p.seq++
	id := p.seq
	p.waiting[fmt.Sprint(id)] = ch
	_, err := fmt.Fprintf(p.in, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":%s}`+"\n", id, params)
	p.mu.Unlock()
	if err != nil {
		b.Error(err)
		return
	}
	select {
	case line := <-ch:
		if !bytes.Contains(line, []byte(`"result"`)) || bytes.Contains(line, []byte(`"isError":true`)) {
			b.Errorf("call over stdio: %.300s", line)
		}
	case <-time.After(30 * time.Second):
		b.Error("no answer over stdio within 30 s")
	}
}
