package e2b

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Benchmarks compare the driver (through the in-process fake, over
// loopback HTTP) with a baseline doing the same work directly on this
// machine, in the same run:
//
//	go test -run '^$' -bench . -count 5 ./providers/e2b/
func benchSandbox(b *testing.B) (*Provider, string) {
	_, url := startFake(b)
	p, err := New(fakeOptions(url))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	sb, err := p.Create(context.Background(), providers.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	return p, sb.ID
}

func BenchmarkExecTrue(b *testing.B) {
	b.Run("baseline=os-exec", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/sh", "-c", "true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("e2b-fake", func(b *testing.B) {
		p, id := benchSandbox(b)
		for b.Loop() {
			if _, err := p.Exec(context.Background(), id, providers.ExecRequest{Command: "true"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkExecOutput10MiB(b *testing.B) {
	const cmd = "head -c 10485760 /dev/zero"
	b.SetBytes(10 << 20)
	b.Run("baseline=os-exec", func(b *testing.B) {
		b.SetBytes(10 << 20)
		for b.Loop() {
			c := exec.Command("/bin/sh", "-c", cmd)
			c.Stdout = io.Discard
			if err := c.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("e2b-fake", func(b *testing.B) {
		b.SetBytes(10 << 20)
		p, id := benchSandbox(b)
		for b.Loop() {
			if _, err := p.Exec(context.Background(), id, providers.ExecRequest{Command: cmd, Stdout: io.Discard}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkWriteRead64KiB(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	b.Run("baseline=os-files", func(b *testing.B) {
		name := filepath.Join(b.TempDir(), "f")
		for b.Loop() {
			if err := os.WriteFile(name, data, 0o644); err != nil {
				b.Fatal(err)
			}
			if _, err := os.ReadFile(name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("e2b-fake", func(b *testing.B) {
		p, id := benchSandbox(b)
		for b.Loop() {
			if err := p.WriteFile(context.Background(), id, "f", data, 0); err != nil {
				b.Fatal(err)
			}
			rc, _, err := p.ReadFile(context.Background(), id, "f")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
}
