package runloop

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/nodesdk"
)

// The driver against Runloop's official TypeScript SDK, doing the same work
// against the same fake in the same run (the SDK times itself from Node,
// so Node's start-up is not counted). Each reports the median iteration:
//
//	go test -run '^$' -bench . -benchtime 20x -count 3 ./providers/runloop/

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// sdkTimes runs sdktest/bench.mjs, or skips without Node and the SDK.
func sdkTimes(b *testing.B, url, op string, n int) []time.Duration {
	node := nodesdk.Node(b)
	dir := nodesdk.SDKDir(b, "runloopfake/sdktest", "@runloop/api-client")
	cmd := nodesdk.Command(b, node, dir, []string{"RUNLOOP_BASE_URL=" + url, "RUNLOOP_API_KEY=" + testKey}, "bench.mjs", op, strconv.Itoa(n))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bench.mjs %s: %v\n%s", op, err, out)
	}
	var ms []float64
	if err := json.Unmarshal(bytes.TrimSpace(out), &ms); err != nil || len(ms) == 0 {
		b.Fatalf("bench.mjs printed %q", out)
	}
	ds := make([]time.Duration, len(ms))
	for i, m := range ms {
		ds[i] = time.Duration(m * float64(time.Millisecond))
	}
	return ds
}

func report(b *testing.B, ds []time.Duration) {
	b.ReportMetric(float64(median(ds))/1e6, "median-ms")
}

func BenchmarkCreateExecShutdown(b *testing.B) {
	url := externalFake(b)
	b.Run("driver", func(b *testing.B) {
		p, err := New(fakeOptions(url))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		var ds []time.Duration
		for b.Loop() {
			start := time.Now()
			sb, err := p.Create(context.Background(), providers.CreateOptions{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			var out bytes.Buffer // the SDK collects output too
			if res, err := p.Exec(context.Background(), sb.ID, providers.ExecRequest{Command: "true", Stdout: &out, Stderr: &out}); err != nil || res.ExitCode != 0 {
				b.Fatal(res, err)
			}
			if err := p.Destroy(context.Background(), sb.ID); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		report(b, ds)
	})
	b.Run("sdk", func(b *testing.B) {
		report(b, sdkTimes(b, url, "create", max(b.N, 5)))
	})
}

func BenchmarkFileRoundTrip1MiB(b *testing.B) {
	url := externalFake(b)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	// roundTrip times a write then a read of data by each driver's own
	// means.
	roundTrip := func(b *testing.B, write func(p *Provider, id string) error, read func(p *Provider, id string) (io.ReadCloser, error)) {
		p, err := New(fakeOptions(url))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		sb, err := p.Create(context.Background(), providers.CreateOptions{Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Destroy(context.Background(), sb.ID)
		var ds []time.Duration
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			start := time.Now()
			if err := write(p, sb.ID); err != nil {
				b.Fatal(err)
			}
			rc, err := read(p, sb.ID)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, rc)
			rc.Close()
			if n != int64(len(data)) {
				b.Fatalf("read %d bytes", n)
			}
			ds = append(ds, time.Since(start))
		}
		report(b, ds)
	}
	b.Run("driver", func(b *testing.B) {
		roundTrip(b, func(p *Provider, id string) error {
			return p.WriteFile(context.Background(), id, "bench.bin", data, 0)
		}, func(p *Provider, id string) (io.ReadCloser, error) {
			rc, _, err := p.ReadFile(context.Background(), id, "bench.bin")
			return rc, err
		})
	})
	// The driver's bare upload and download, without the atomic place and
	// the read's check: what those cost is the difference.
	b.Run("driver-transfer-only", func(b *testing.B) {
		roundTrip(b, func(p *Provider, id string) error {
			return p.upload(context.Background(), id, "bench.bin", data)
		}, func(p *Provider, id string) (io.ReadCloser, error) {
			d := &download{ctx: context.Background(), p: p, id: id, name: "bench.bin", size: int64(len(data))}
			return d, d.open()
		})
	})
	b.Run("sdk", func(b *testing.B) {
		report(b, sdkTimes(b, url, "file", max(b.N, 5)))
	})
}
