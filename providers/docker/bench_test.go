package docker_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
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
// done, against `docker run --rm IMAGE true`.
func BenchmarkCreateToFirstCommand(b *testing.B) {
	p := open(b, settings())
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
	p := open(b, settings())
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
	// process handle at wait_seconds.
	b.Run("run_command-path", func(b *testing.B) { benchRunTrue(b, p, sb.ID) })
	b.Run("docker-exec", func(b *testing.B) {
		cli := dockerCLI(b)
		for b.Loop() {
			if out, err := exec.Command(cli, "exec", sb.ID, "true").CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}
