// Command mcp-sandbox-supervisor is the in-sandbox process supervisor the
// driver embeds and uploads (see providers/supervisor/helper.go).
package main

import (
	"os"

	"github.com/mcp-sandbox/mcp-sandbox/providers/supervisor/internal/helper"
)

func main() { os.Exit(helper.Main(os.Args[1:])) }
