// Command modalfake runs the Modal fake as its own process, for tests written
// in other languages and for trying the modal provider by hand. It prints the
// environment a client needs, one KEY=value per line, then serves until
// interrupted:
//
//	modalfake -addr 127.0.0.1:0
//	MODAL_SERVER_URL=http://127.0.0.1:41234
//	MODAL_TOKEN_ID=ak-modalfake
//	MODAL_TOKEN_SECRET=as-modalfake
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcp-sandbox/mcp-sandbox/providers/modal/modalfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	tokenID := flag.String("token-id", "ak-modalfake", "the only token ID accepted")
	tokenSecret := flag.String("token-secret", "as-modalfake", "the only token secret accepted")
	verbose := flag.Bool("v", false, "log every call to stderr")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fake, err := modalfake.New(modalfake.Options{TokenID: *tokenID, TokenSecret: *tokenSecret, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "modalfake:", err)
		os.Exit(1)
	}
	url, err := fake.Listen(*addr)
	if err != nil {
		fake.Close()
		fmt.Fprintln(os.Stderr, "modalfake:", err)
		os.Exit(1)
	}
	fmt.Printf("MODAL_SERVER_URL=%s\nMODAL_TOKEN_ID=%s\nMODAL_TOKEN_SECRET=%s\n", url, *tokenID, *tokenSecret)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fake.Close()
}
