//go:build ignore

// gen_helper builds the in-sandbox supervisor (internal/helper) for every
// architecture the driver uploads it to, static and reproducible, and
// writes it gzipped beside the Go version that built it:
//
//	go run gen_helper.go [-o DIR] [-arch amd64,arm64]
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

func main() {
	out := flag.String("o", "helperbin", "output directory")
	arches := flag.String("arch", "amd64,arm64", "architectures to build, comma-separated")
	flag.Parse()
	tmp, err := os.MkdirTemp("", "mcp-sandbox-supervisor-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, arch := range strings.Split(*arches, ",") {
		bin := filepath.Join(tmp, arch)
		cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", bin, "./internal/helper/cmd/mcp-sandbox-supervisor")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			log.Fatalf("build for %s: %v", arch, err)
		}
		raw, err := os.ReadFile(bin)
		if err != nil {
			log.Fatal(err)
		}
		var z bytes.Buffer
		w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		w.Write(raw)
		w.Close()
		if err := os.WriteFile(filepath.Join(*out, "linux-"+arch+".gz"), z.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	version := strings.TrimSpace(runtime.Version())
	if err := os.WriteFile(filepath.Join(*out, "go-version"), []byte(version+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
}
