package fakebox

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
)

// Command is the main of a vendor fake's own command (cmd/<name>fake), so
// that tests in other languages and people trying a provider can run the
// fake: it adds -addr and -v to the flags the caller defined, parses them,
// calls start with the listen address and a logger, prints the environment
// a client needs (start's lines, KEY=value each) and serves until SIGINT
// or SIGTERM, then calls stop. A failure exits non-zero, naming the fake.
func Command(name string, start func(addr string, logger *slog.Logger) (env []string, stop func(), err error)) {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	verbose := flag.Bool("v", false, "log every request to stderr")
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	env, stop, err := start(*addr, logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	defer stop()
	for _, kv := range env {
		fmt.Println(kv)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	<-ctx.Done()
}

// Serve serves srv on a new listener at addr in the background; stop lets
// requests in flight finish, for a moment, then closes it.
func Serve(addr string, srv *http.Server) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	go srv.Serve(ln)
	return ln.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}, nil
}
