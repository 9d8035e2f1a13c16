// Command daytonafake runs the Daytona fake as its own process, for tests
// written in other languages and for trying the daytona provider without an
// account. It prints the environment a client needs, one KEY=value per line,
// then serves until interrupted:
//
//	daytonafake -addr 127.0.0.1:0 -api-key test
//	DAYTONA_API_URL=http://127.0.0.1:41234/api
//	DAYTONA_API_KEY=test
//
// Faults are injected with POST /_fake/faults (see daytonafake.FaultRequest).
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

	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona/daytonafake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	apiKey := flag.String("api-key", "daytonafake-key", "the only API key accepted")
	verbose := flag.Bool("v", false, "log every request to stderr")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fake, err := daytonafake.New(daytonafake.Options{APIKey: *apiKey, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "daytonafake:", err)
		os.Exit(1)
	}
	defer fake.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "daytonafake:", err)
		os.Exit(1)
	}
	fmt.Printf("DAYTONA_API_URL=http://%s/api\nDAYTONA_API_KEY=%s\n", ln.Addr(), *apiKey)

	srv := &http.Server{Handler: fake}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "daytonafake:", err)
		os.Exit(1)
	}
}
