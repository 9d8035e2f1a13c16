package modal

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// BenchmarkAgainstSDK measures, in one run and against the same fake, the
// driver and Modal's official JS SDK doing the same work: create + exec +
// terminate, and a 1 MiB file written and read back. It reports medians
// (ms per operation) as metrics:
//
//	go test -run '^$' -bench AgainstSDK -benchtime 20x ./providers/modal/
//
// Without Node 22 and the SDK (.ci/setup-node.sh) the SDK half is skipped.
func BenchmarkAgainstSDK(b *testing.B) {
	_, url := startFake(b)
	n := max(b.N, 5)
	ctx := context.Background()
	p := newDriver(b, fakeOptions(url))

	lifecycle := make([]time.Duration, 0, n)
	for i := 0; i < n+1; i++ {
		t0 := time.Now()
		sb, err := p.Create(ctx, providers.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if res, err := p.Exec(ctx, sb.ID, providers.ExecRequest{Command: "true"}); err != nil || res.ExitCode != 0 {
			b.Fatal(res, err)
		}
		if err := p.Destroy(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		if i > 0 { // the first warms up
			lifecycle = append(lifecycle, time.Since(t0))
		}
	}
	sb := create(b, p, providers.CreateOptions{})
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*31 + 7)
	}
	files := make([]time.Duration, 0, n)
	for i := 0; i < n+1; i++ {
		t0 := time.Now()
		if err := p.WriteFile(ctx, sb.ID, "bench.bin", data, 0); err != nil {
			b.Fatal(err)
		}
		rc, _, err := p.ReadFile(ctx, sb.ID, "bench.bin")
		if err != nil {
			b.Fatal(err)
		}
		back, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(back, data) {
			b.Fatal("read back differs")
		}
		if i > 0 {
			files = append(files, time.Since(t0))
		}
	}
	b.ReportMetric(medianMS(lifecycle), "driver-create-exec-terminate-ms")
	b.ReportMetric(medianMS(files), "driver-1MiB-roundtrip-ms")

	node, dir := sdkNode()
	if node == "" {
		b.Log("Node 22 or the modal SDK is missing (.ci/setup-node.sh); SDK figures skipped")
		return
	}
	cmd := exec.Command(node, "bench.mjs", strconv.Itoa(n))
	cmd.Dir = dir
	home := b.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "MODAL_CONFIG_PATH=" + filepath.Join(home, "absent.toml"),
		"MODAL_SERVER_URL=" + url, "MODAL_TOKEN_ID=" + testTokenID, "MODAL_TOKEN_SECRET=" + testTokenSecret}
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bench.mjs: %v\n%s", err, out)
	}
	var res struct{ Lifecycle, Files []float64 }
	line := out[bytes.LastIndexByte(bytes.TrimSpace(out), '\n')+1:]
	if err := json.Unmarshal(line, &res); err != nil {
		b.Fatalf("bench.mjs printed %q: %v", out, err)
	}
	b.ReportMetric(medianF(res.Lifecycle), "sdk-create-exec-terminate-ms")
	b.ReportMetric(medianF(res.Files), "sdk-1MiB-roundtrip-ms")
}

func medianMS(ds []time.Duration) float64 {
	fs := make([]float64, len(ds))
	for i, d := range ds {
		fs[i] = float64(d) / float64(time.Millisecond)
	}
	return medianF(fs)
}

func medianF(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	s := slices.Clone(fs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// sdkNode finds Node 22 and the pinned SDK the way the fake's contract test
// does, or returns "".
func sdkNode() (node, dir string) {
	node = os.Getenv("MCP_SANDBOX_NODE")
	if node == "" {
		node = "/opt/mcp-sandbox/node22/node_modules/node/bin/node"
	}
	if out, err := exec.Command(node, "--version").Output(); err != nil || !strings.HasPrefix(string(out), "v22.") {
		return "", ""
	}
	dir, _ = filepath.Abs("modalfake/sdktest")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "modal", "package.json")); err != nil {
		return "", ""
	}
	return node, dir
}
