package docker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
)

// BenchmarkStartProcess: starting a background process (one exec that
// returns once the command runs), and a foreground RunProcess, against a
// plain Exec of `true` in the same sandbox:
//
//	go test -run '^$' -bench StartProcess -count 5 ./providers/docker/
func BenchmarkStartProcess(b *testing.B) {
	p := open(b, settings())
	ctx := context.Background()
	sb, err := p.Create(ctx, providers.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	if _, err := p.RunProcess(ctx, sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "true"}, Wait: 10e9}); err != nil {
		b.Fatal(err)
	}
	p.WaitChannel(sb.ID, time.Minute)
	b.Run("exec", func(b *testing.B) {
		for b.Loop() {
			if res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "true"}); err != nil || res.ExitCode != 0 {
				b.Fatalf("%+v %v", res, err)
			}
		}
	})
	b.Run("start", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "true"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("run", func(b *testing.B) { benchRunTrue(b, p, sb.ID) })
	// The same through the Processes interface alone: start,
	// wait for the exit, read the output, forget the record.
	b.Run("start-wait-read-remove", func(b *testing.B) {
		for b.Loop() {
			in, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "echo hi"})
			if err != nil {
				b.Fatal(err)
			}
			if in, err = p.WaitProcess(ctx, sb.ID, in.ID, 10e9); err != nil || in.Running {
				b.Fatal(in, err)
			}
			if _, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Limit: 1 << 20}); err != nil {
				b.Fatal(err)
			}
			if err := p.RemoveProcess(ctx, sb.ID, in.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read-64k", func(b *testing.B) {
		in, err := p.StartProcess(ctx, sb.ID, providers.ProcessSpec{Command: "head -c 1000000 /dev/zero"})
		if err != nil {
			b.Fatal(err)
		}
		p.WaitProcess(ctx, sb.ID, in.ID, 10e9)
		for b.Loop() {
			if out, err := p.ReadOutput(ctx, sb.ID, in.ID, providers.OutputRequest{Stream: providers.Stdout, Offset: 500000, Limit: 64 << 10}); err != nil || len(out.Data) != 64<<10 {
				b.Fatal(len(out.Data), err)
			}
		}
	})
}

// BenchmarkOutput100MB: a command printing 100 MB, through Exec (streamed
// straight from the exec) and through RunProcess (copied into the
// process's files in the sandbox and followed from there):
//
//	go test -run '^$' -bench Output100MB -benchtime 3x ./providers/docker/
func BenchmarkOutput100MB(b *testing.B) {
	p := open(b, settings())
	ctx := context.Background()
	sb, err := p.Create(ctx, providers.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	const cmd = "head -c 100000000 /dev/zero"
	b.SetBytes(100000000)
	b.Run("exec", func(b *testing.B) {
		b.SetBytes(100000000)
		for b.Loop() {
			var n countWriter
			if res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: cmd, Stdout: &n}); err != nil || res.ExitCode != 0 || n != 100000000 {
				b.Fatalf("%+v %v %d", res, err, n)
			}
		}
	})
	// With the default output limit (64 MiB kept) and a small one (1 MiB:
	// the copier then waits for the follower at every rotation).
	for _, limit := range []int64{0, 1 << 20} {
		b.Run(fmt.Sprintf("run-limit-%d", limit), func(b *testing.B) {
			b.SetBytes(100000000)
			for b.Loop() {
				var n countWriter
				res, err := p.RunProcess(ctx, sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: cmd, OutputLimit: limit}, Wait: time.Minute, KeepAfter: 1 << 20, Stdout: &n})
				if err != nil || res.ExitCode != 0 || n != 100000000 {
					b.Fatalf("%+v %v %d", res, err, n)
				}
				p.RemoveProcess(ctx, sb.ID, res.ProcessID)
			}
		})
	}
}

type countWriter int64

func (c *countWriter) Write(b []byte) (int, error) {
	*c += countWriter(len(b))
	return len(b), nil
}

// benchRunTrue measures run_command's path on docker: RunProcess of a quick
// command, one exec, leaving no process record.
func benchRunTrue(b *testing.B, p *docker.Provider, id string) {
	// The first process operation puts the helper in place; the channel
	// then opens in the background.
	if _, err := p.RunProcess(context.Background(), id, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "true"}, Wait: 10e9}); err != nil {
		b.Fatal(err)
	}
	p.WaitChannel(id, time.Minute)
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := p.RunProcess(context.Background(), id, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "true"}, Wait: 10e9, KeepAfter: 1 << 20})
		if err != nil || res.ExitCode != 0 || res.ProcessID != "" {
			b.Fatalf("%+v %v", res, err)
		}
		took = append(took, time.Since(start))
	}
	// The target is a median: a command that finds the spare supervisor
	// still busy with the last one's end starts one of its own, and a few
	// of those weigh on the mean.
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/1e6, "median-ms")
}

// BenchmarkFirstStartProcess: what the supervisor helper costs a sandbox
// once, against a start with the helper known: the first start by a fresh
// driver that must upload it (1.9 MB), and one that only finds it in place
// (a restarted server):
//
//	go test -run '^$' -bench FirstStartProcess -benchtime 5x -count 3 ./providers/docker/
func BenchmarkFirstStartProcess(b *testing.B) {
	set := settings()
	p := open(b, set)
	ctx := context.Background()
	sb, err := p.Create(ctx, providers.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	start := func(b *testing.B, p *docker.Provider) {
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
					if _, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "rm -rf /tmp/.mcp-sandbox-procs/.bin"}); err != nil {
						b.Fatal(err)
					}
				}
				fresh := open(b, set)
				b.StartTimer()
				start(b, fresh)
			}
		})
	}
}
