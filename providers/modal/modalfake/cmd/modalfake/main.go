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
	"flag"
	"log/slog"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
	"github.com/mcp-sandbox/mcp-sandbox/providers/modal/modalfake"
)

func main() {
	tokenID := flag.String("token-id", "ak-modalfake", "the only token ID accepted")
	tokenSecret := flag.String("token-secret", "as-modalfake", "the only token secret accepted")
	fakebox.Command("modalfake", func(addr string, logger *slog.Logger) ([]string, func(), error) {
		fake, err := modalfake.New(modalfake.Options{TokenID: *tokenID, TokenSecret: *tokenSecret, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		url, err := fake.Listen(addr)
		if err != nil {
			fake.Close()
			return nil, nil, err
		}
		env := []string{"MODAL_SERVER_URL=" + url, "MODAL_TOKEN_ID=" + *tokenID, "MODAL_TOKEN_SECRET=" + *tokenSecret}
		return env, func() { fake.Close() }, nil
	})
}
