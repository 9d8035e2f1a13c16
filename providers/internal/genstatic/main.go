// Command genstatic builds a small program the server embeds (the
// supervisor's in-sandbox helper, the jail's reaper) for every architecture,
// static and reproducible, and writes it gzipped beside the Go version that
// built it; go generate runs it in the embedding package's directory:
//
//	go run github.com/mcp-sandbox/mcp-sandbox/providers/internal/genstatic -pkg ./internal/reaper -o reaperbin [-arch amd64,arm64]
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
	pkg := flag.String("pkg", "", "the program's package, relative to the working directory")
	out := flag.String("o", "", "output directory")
	arches := flag.String("arch", "amd64,arm64", "architectures to build, comma-separated")
	flag.Parse()
	if *pkg == "" || *out == "" {
		log.Fatal("usage: genstatic -pkg ./internal/... -o DIR [-arch amd64,arm64]")
	}
	tmp, err := os.MkdirTemp("", "mcp-sandbox-genstatic-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, arch := range strings.Split(*arches, ",") {
		bin := filepath.Join(tmp, arch)
		cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", bin, *pkg)
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
