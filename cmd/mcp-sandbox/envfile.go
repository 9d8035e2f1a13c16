package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/joho/godotenv"
)

// readEnvFile reads the .env file the operator named with --env-file or
// MCP_SANDBOX_ENV_FILE, and nothing otherwise: a .env lying in the working
// directory belongs to the project the client was started in, and must not
// configure the server behind the operator's back.
func readEnvFile(path string) (map[string]string, error) {
	if path == "" {
		return map[string]string{}, nil
	}
	values, err := godotenv.Read(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read env file %q: %v (fix the file or point --env-file / MCP_SANDBOX_ENV_FILE elsewhere)", path, err)
	}
	return values, nil
}

// internalNames are MCP_SANDBOX_ variables the server sets for itself
// (inside sandboxes, for its helpers and tests), not settings.
var internalNames = map[string]bool{
	"MCP_SANDBOX_ID":              true,
	"MCP_SANDBOX_EXEC":            true,
	"MCP_SANDBOX_LOCAL_SUPERVISE": true,
	"MCP_SANDBOX_PROBE_URL":       true,
}

// unknownSettings warns of every MCP_SANDBOX_ name, in the environment or
// the .env file, that no setting reads: a misspelt name silently leaves
// its setting at the default. Each warning names the closest valid one.
func unknownSettings(known []string, environ []string, dotenv map[string]string, envFile string) []string {
	isKnown := map[string]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	type origin struct{ name, from string }
	var found []origin
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		found = append(found, origin{name, "the environment"})
	}
	for name := range dotenv {
		found = append(found, origin{name, "the .env file " + envFile})
	}
	var warnings []string
	for _, o := range found {
		if !strings.HasPrefix(o.name, "MCP_SANDBOX_") || isKnown[o.name] || internalNames[o.name] {
			continue
		}
		w := fmt.Sprintf("%s (in %s) is not a setting of mcp-sandbox and is ignored", o.name, o.from)
		if best := closest(o.name, known); best != "" {
			w += "; did you mean " + best + "?"
		}
		warnings = append(warnings, w)
	}
	sort.Strings(warnings)
	return warnings
}

// closest is the name nearest to name by edit distance, if it is near
// enough to be a slip (a third of the name's length at most).
func closest(name string, names []string) string {
	best, bestDist := "", len(name)/3+1
	for _, n := range names {
		if d := editDistance(name, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (ASCII names).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// knownSettingNames are the environment names of every setting: the
// server's and every driver's.
func knownSettingNames() []string {
	var names []string
	for _, s := range append(append([]setting(nil), settings...), driverSettings()...) {
		names = append(names, s.env)
	}
	return names
}
