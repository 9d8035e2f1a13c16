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
	"flag"
	"log/slog"

	"github.com/mcp-sandbox/mcp-sandbox/providers/internal/fakebox"
	"github.com/mcp-sandbox/mcp-sandbox/providers/runloop/runloopfake"
)

func main() {
	apiKey := flag.String("api-key", "runloopfake-key", "the only API key accepted")
	provision := flag.Duration("provision-delay", 0, "how long a new devbox stays provisioning")
	fakebox.Command("runloopfake", func(addr string, logger *slog.Logger) ([]string, func(), error) {
		fake, err := runloopfake.New(runloopfake.Options{APIKey: *apiKey, ProvisionDelay: *provision, Logger: logger})
		if err != nil {
			return nil, nil, err
		}
		at, stop, err := fakebox.Serve(addr, fake.HTTPServer())
		if err != nil {
			fake.Close()
			return nil, nil, err
		}
		env := []string{"RUNLOOP_BASE_URL=http://" + at.String(), "RUNLOOP_API_KEY=" + *apiKey}
		return env, func() { stop(); fake.Close() }, nil
	})
}
