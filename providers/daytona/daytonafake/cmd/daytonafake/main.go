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
	"flag"
	"log/slog"
	"net/http"

	"github.com/mcp-sandbox/mcp-sandbox/providers/daytona/daytonafake"
	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
)

func main() {
	apiKey := flag.String("api-key", "daytonafake-key", "the only API key accepted")
	fakebox.Command("daytonafake", func(addr string, logger *slog.Logger) ([]string, func(), error) {
		fake, err := daytonafake.New(daytonafake.Options{APIKey: *apiKey, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		at, stop, err := fakebox.Serve(addr, &http.Server{Handler: fake})
		if err != nil {
			fake.Close()
			return nil, nil, err
		}
		env := []string{"DAYTONA_API_URL=http://" + at.String() + "/api", "DAYTONA_API_KEY=" + *apiKey}
		return env, func() { stop(); fake.Close() }, nil
	})
}
