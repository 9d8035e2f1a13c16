// Command runloopfake runs the Runloop fake as its own process, for tests
// written in other languages and for trying the provider by hand. It prints
// the environment a client needs, one KEY=value per line, then serves
// HTTP/1.1 and h2c until interrupted:
//
//	runloopfake -addr 127.0.0.1:0 -api-key test
//	RUNLOOP_BASE_URL=http://127.0.0.1:41234
//	RUNLOOP_API_KEY=test
//
// Faults are injected with POST /_fake/faults (see runloopfake.FaultRequest).
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
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	apiKey := flag.String("api-key", "runloopfake-key", "the only API key accepted")
	provision := flag.Duration("provision-delay", 0, "how long a new devbox stays provisioning")
	verbose := flag.Bool("v", false, "log every request to stderr")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fake, err := runloopfake.New(runloopfake.Options{APIKey: *apiKey, ProvisionDelay: *provision, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "runloopfake:", err)
		os.Exit(1)
	}
	defer fake.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "runloopfake:", err)
		os.Exit(1)
	}
	fmt.Printf("RUNLOOP_BASE_URL=http://%s\nRUNLOOP_API_KEY=%s\n", ln.Addr(), *apiKey)

	srv := fake.HTTPServer()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "runloopfake:", err)
		os.Exit(1)
	}
}
