package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestGoSDKClient runs internal/gosdkclient, a module of its own in which the
// official Go SDK drives a whole flow over stdio and HTTP against the built
// binary, validating every structuredContent against its outputSchema. `go
// test ./...` does not descend into a nested module, so this test runs it.
// Without the module proxy it skips, unless CI=true.
func TestGoSDKClient(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("internal", "gosdkclient"))
	if err != nil {
		t.Fatal(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "MCP_SANDBOX_BINARY="+binary)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	download := exec.CommandContext(ctx, goTool, "mod", "download")
	download.Dir, download.Env = dir, env
	if out, err := download.CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the Go SDK module cannot be downloaded: %v\n%s", err, out)
		}
		t.Skipf("the Go SDK module cannot be downloaded (no module proxy?): %v\n%s", err, out)
	}
	run := exec.CommandContext(ctx, goTool, "test", "-count=1", "-v", "./...")
	run.Dir, run.Env = dir, env
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the Go SDK client's flow failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
