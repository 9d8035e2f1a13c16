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

// BenchmarkFirstStartProcess: what the supervisor helper costs a sandbox
// once (see the docker driver's benchmark of the same name).
func BenchmarkFirstStartProcess(b *testing.B) {
	_, url := startFake(b)
	p := newBenchDriver(b, url)
	ctx := context.Background()
	sb, err := p.Create(ctx, providers.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	start := func(b *testing.B, p *Provider) {
		if _, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "true"}); err != nil {
			b.Fatal(err)
		}
	}
	start(b, p)
	b.Run("helper-known", func(b *testing.B) {
		for b.Loop() {
			start(b, p)
		}
	})
	for _, tc := range []struct {
		name   string
		remove bool
	}{{"helper-in-place", false}, {"helper-uploaded", true}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if tc.remove {
					if _, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: `rm -rf "$TMPDIR/.mcp-sandbox-procs/.bin"`}); err != nil {
						b.Fatal(err)
					}
				}
				fresh := newBenchDriver(b, url)
				b.StartTimer()
				start(b, fresh)
			}
		})
	}
}

func newBenchDriver(b *testing.B, url string) *Provider {
	p, err := New(fakeOptions(url))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}
