// Command e2bfake runs the E2B fake as its own process, for tests written in
// other languages. It prints the environment a client needs, one KEY=value
// per line, then serves until interrupted:
//
//	e2bfake -addr 127.0.0.1:0 -api-key test
//	E2B_API_URL=http://127.0.0.1:41234
//	E2B_SANDBOX_URL=http://127.0.0.1:41234
//	E2B_API_KEY=test
//
// Faults are injected with POST /_fake/faults (see e2bfake.FaultRequest).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	apiKey := flag.String("api-key", "e2bfake-key", "the only API key accepted")
	verbose := flag.Bool("v", false, "log every request to stderr")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fake, err := e2bfake.New(e2bfake.Options{APIKey: *apiKey, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2bfake:", err)
		os.Exit(1)
	}
	defer fake.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2bfake:", err)
		os.Exit(1)
	}
	url := "http://" + ln.Addr().String()
	fmt.Printf("E2B_API_URL=%s\nE2B_SANDBOX_URL=%s\nE2B_API_KEY=%s\n", url, url, *apiKey)

	srv := &http.Server{Handler: fake}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "e2bfake:", err)
		os.Exit(1)
	}
}
