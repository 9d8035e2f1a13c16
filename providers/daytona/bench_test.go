package daytona

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/nodesdk"
)

// Benchmarks compare the driver with Daytona's official TypeScript SDK
// doing the same work against the same fake (its own process), in the same
// run; each reports the median of its iterations as median-ms:
//
//	go test -run '^$' -bench . -benchtime 20x ./providers/daytona/
//
// The SDK side needs Node 22 and the SDK (.ci/setup-node.sh); without them
// it is skipped.
func BenchmarkCreateExecDestroy(b *testing.B) {
	url := externalFake(b)
	b.Run("driver", func(b *testing.B) {
		p := newDriver(b, fakeOptions(url))
		ctx := context.Background()
		median(b, func() {
			sb, err := p.Create(ctx, providers.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			var out bytes.Buffer
			if res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "echo hi", Stdout: &out}); err != nil || res.ExitCode != 0 || out.String() != "hi\n" {
				b.Fatalf("exec: %+v %q %v", res, out.String(), err)
			}
			if err := p.Destroy(ctx, sb.ID); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("sdk", func(b *testing.B) { sdkBench(b, url, "create-exec-delete") })
	// executeCommand mixes stdout and stderr; a session command, the SDK's
	// way to have them apart, is the nearer match to the driver's work.
	b.Run("sdk-session", func(b *testing.B) { sdkBench(b, url, "create-session-exec-delete") })
}

func BenchmarkFileRoundTrip1MiB(b *testing.B) {
	url := externalFake(b)
	data := make([]byte, 1<<20)
	rand.Read(data)
	b.Run("driver", func(b *testing.B) {
		b.SetBytes(2 << 20)
		p := newDriver(b, fakeOptions(url))
		ctx := context.Background()
		sb, err := p.Create(ctx, providers.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
		median(b, func() {
			if err := p.WriteFile(ctx, sb.ID, "f.bin", data, 0); err != nil {
				b.Fatal(err)
			}
			rc, _, err := p.ReadFile(ctx, sb.ID, "f.bin")
			if err != nil {
				b.Fatal(err)
			}
			back, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(back, data) {
				b.Fatalf("round trip: %d bytes, %v", len(back), err)
			}
		})
	})
	b.Run("sdk", func(b *testing.B) {
		b.SetBytes(2 << 20)
		sdkBench(b, url, "file-1mib")
	})
}

// median runs f b.N times and reports the median duration.
func median(b *testing.B, f func()) {
	var times []time.Duration
	for b.Loop() {
		t := time.Now()
		f()
		times = append(times, time.Since(t))
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2])/1e6, "median-ms")
}

// sdkBench runs bench.mjs for b.N iterations and reports its timings.
func sdkBench(b *testing.B, url, what string) {
	node := nodesdk.Node(b)
	dir := nodesdk.SDKDir(b, "daytonafake/sdktest", "@daytonaio/sdk")
	cmd := nodesdk.Command(b, node, dir, []string{"DAYTONA_API_URL=" + url, "DAYTONA_API_KEY=" + testKey}, "bench.mjs", what, strconv.Itoa(b.N))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bench.mjs: %v\n%s", err, out)
	}
	var res struct {
		N        int     `json:"n"`
		TotalMs  float64 `json:"totalMs"`
		MedianMs float64 `json:"medianMs"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || res.N != b.N {
		b.Fatalf("bench.mjs printed %q", out)
	}
	b.ReportMetric(res.TotalMs*1e6/float64(res.N), "ns/op")
	b.ReportMetric(res.MedianMs, "median-ms")
}
