package docker_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
)

// The baselines run the docker CLI against the same engine and image in the
// same run, so the ratios hold on a noisy machine:
//
//	go test -run '^$' -bench . -count 5 ./providers/docker/

func dockerCLI(b *testing.B) string {
	cli, err := exec.LookPath("docker")
	if err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	return cli
}

// BenchmarkCreateToFirstCommand: a new sandbox until its first command is
// done, against `docker run --rm IMAGE true`; then the same by run_command's
// path (RunProcess), made cold and taken from a warm pool (refilled between
// iterations, off the clock):
//
//	go test -run '^$' -bench CreateToFirstCommand -benchtime 10x -count 5 ./providers/docker/
func BenchmarkCreateToFirstCommand(b *testing.B) {
	set := settings()
	p := open(b, set)
	ctx := context.Background()
	b.Run("provider", func(b *testing.B) {
		for b.Loop() {
			sb, err := p.Create(ctx, providers.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "true"}); err != nil || res.ExitCode != 0 {
				b.Fatalf("%+v %v", res, err)
			}
			b.StopTimer()
			if err := p.Destroy(ctx, sb.ID); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	firstRun := func(b *testing.B, p *docker.Provider, refill func()) {
		for b.Loop() {
			sb, err := p.Create(ctx, providers.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			res, err := p.RunProcess(ctx, sb.ID, providers.RunRequest{ProcessSpec: providers.ProcessSpec{Command: "true"}, Wait: 10e9, KeepAfter: 1 << 20})
			if err != nil || res.ExitCode != 0 {
				b.Fatalf("%+v %v", res, err)
			}
			b.StopTimer()
			if err := p.Destroy(ctx, sb.ID); err != nil {
				b.Fatal(err)
			}
			refill()
			b.StartTimer()
		}
	}
	b.Run("run_command-cold", func(b *testing.B) { firstRun(b, p, func() {}) })
	b.Run("run_command-warm", func(b *testing.B) {
		warm := open(b, settings(envServer, set[envServer], docker.EnvPool, "1"))
		refill := func() {
			for deadline := time.Now().Add(2 * time.Minute); warm.WarmCount(ctx) < 1; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the pool was not refilled")
				}
			}
		}
		refill()
		warm.WarmOnly() // a cold create would not measure the pool
		firstRun(b, warm, refill)
	})
	b.Run("docker-run", func(b *testing.B) {
		cli := dockerCLI(b)
		for b.Loop() {
			if out, err := exec.Command(cli, "run", "--rm", "--network", "none", testImage(), "true").CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}

// BenchmarkExecTrue: `true` in a running sandbox, against `docker exec C true`.
func BenchmarkExecTrue(b *testing.B) {
	set := settings()
	p := open(b, set)
	ctx := context.Background()
	sb, err := p.Create(ctx, providers.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	b.Run("provider", func(b *testing.B) {
		for b.Loop() {
			if res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "true"}); err != nil || res.ExitCode != 0 {
				b.Fatalf("%+v %v", res, err)
			}
		}
	})
	// What run_command does on docker: RunProcess, which can hand back a
	// process handle at wait_seconds; through the sandbox's channel, and
	// through an engine exec per command as where no channel can be had.
	b.Run("run_command-path", func(b *testing.B) { benchRunTrue(b, p, sb.ID) })
	b.Run("run_command-path-engine-exec", func(b *testing.B) {
		viaExec := open(b, set)
		viaExec.UseEngineExec()
		benchRunTrue(b, viaExec, sb.ID)
	})
	b.Run("docker-exec", func(b *testing.B) {
		cli := dockerCLI(b)
		for b.Loop() {
			if out, err := exec.Command(cli, "exec", sb.ID, "true").CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}
