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
	"flag"
	"log/slog"
	"net/http"

	"github.com/mcp-sandbox/mcp-sandbox/providers/e2b/e2bfake"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

func main() {
	apiKey := flag.String("api-key", "e2bfake-key", "the only API key accepted")
	fakebox.Command("e2bfake", func(addr string, logger *slog.Logger) ([]string, func(), error) {
		fake, err := e2bfake.New(e2bfake.Options{APIKey: *apiKey, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		at, stop, err := fakebox.Serve(addr, &http.Server{Handler: fake})
		if err != nil {
			fake.Close()
			return nil, nil, err
		}
		url := "http://" + at.String()
		env := []string{"E2B_API_URL=" + url, "E2B_SANDBOX_URL=" + url, "E2B_API_KEY=" + *apiKey}
		return env, func() { stop(); fake.Close() }, nil
	})
}
