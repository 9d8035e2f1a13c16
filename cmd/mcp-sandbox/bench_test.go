package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// BenchmarkRunCommandTrue compares run_command("true") over stdio with the
// floor it cannot beat: a raw fork/exec of `sh -c true` (target: ≤1.5x).
func BenchmarkRunCommandTrue(b *testing.B) {
	b.Run("baseline=raw-exec", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/sh", "-c", "true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stdio", func(b *testing.B) {
		c, err := client.NewStdioMCPClient(binary, []string{"MCP_SANDBOX_STATE_DIR=" + b.TempDir(), "HOME=" + b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		initialize(b, c)
		req := mcp.CallToolRequest{}
		req.Params.Name = "run_command"
		req.Params.Arguments = map[string]any{"command": "true"}
		if _, err := c.CallTool(context.Background(), req); err != nil { // creates the sandbox
			b.Fatal(err)
		}
		for b.Loop() {
			res, err := c.CallTool(context.Background(), req)
			if err != nil || res.IsError {
				b.Fatal(err, res)
			}
		}
	})
}

// BenchmarkStartToToolsList measures process start to an answered
// tools/list (target: under 20 ms), beside starting /bin/true.
func BenchmarkStartToToolsList(b *testing.B) {
	b.Run("baseline=start-true", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mcp-sandbox", func(b *testing.B) {
		env := []string{"MCP_SANDBOX_STATE_DIR=" + b.TempDir(), "HOME=" + b.TempDir()}
		for b.Loop() {
			c, err := client.NewStdioMCPClient(binary, env)
			if err != nil {
				b.Fatal(err)
			}
			initialize(b, c)
			if _, err := c.ListTools(context.Background(), mcp.ListToolsRequest{}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			c.Close()
			b.StartTimer()
		}
	})
}

// rawStdio drives the server binary with hand-written JSON-RPC lines, so a
// benchmark measures the server and not a client's JSON decoding.
type rawStdio struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	id  int
}

func startRaw(b *testing.B, env []string) *rawStdio {
	cmd := exec.Command(binary)
	cmd.Env = env
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := &rawStdio{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 4<<20)}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	r.call(b, "initialize", `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}`)
	io.WriteString(in, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n")
	return r
}

// call sends a request and returns the raw response line.
func (r *rawStdio) call(b *testing.B, method, params string) []byte {
	r.id++
	fmt.Fprintf(r.in, `{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`+"\n", r.id, method, params)
	line, err := r.out.ReadBytes('\n')
	if err != nil {
		b.Fatal(err)
	}
	if !bytes.Contains(line[:min(len(line), 40)], []byte(fmt.Sprintf(`"id":%d`, r.id))) {
		b.Fatalf("unexpected response: %.200s", line)
	}
	return line
}

// BenchmarkReadFile1MiB: read_file of a 1 MiB text file over stdio, beside
// the least any server must do for it: read the file and JSON-encode it.
func BenchmarkReadFile1MiB(b *testing.B) {
	state := b.TempDir()
	r := startRaw(b, []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + b.TempDir(), "MCP_SANDBOX_MAX_READ_BYTES=2MiB"})
	r.call(b, "tools/call", `{"name":"run_command","arguments":{"command":"head -c 1048576 /dev/zero | tr '\\0' a | fold -w 99 > big.txt"}}`)
	matches, _ := filepath.Glob(filepath.Join(state, "local", "*", "root", "big.txt"))
	if len(matches) != 1 {
		b.Fatal("big.txt not created")
	}
	b.Run("baseline=read+json", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			data, err := os.ReadFile(matches[0])
			if err != nil {
				b.Fatal(err)
			}
			json.Marshal(map[string]string{"content": string(data)})
		}
	})
	b.Run("read_file", func(b *testing.B) {
		b.SetBytes(1 << 20)
		for b.Loop() {
			line := r.call(b, "tools/call", `{"name":"read_file","arguments":{"path":"big.txt","limit":20000}}`)
			if bytes.Contains(line, []byte(`"isError":true`)) || len(line) < 1<<20 {
				b.Fatalf("read_file failed: %.300s", line)
			}
		}
	})
}
