package httpguard

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// MinTokenLength is the shortest bearer token accepted. A token guards
// command execution, so a guessable one is refused at startup.
const MinTokenLength = 16

// LoadToken returns the bearer token from exactly one of a value (flag or
// MCP_SANDBOX_AUTH_TOKEN) and a file (MCP_SANDBOX_AUTH_TOKEN_FILE, for
// secrets mounted as files). Surrounding whitespace, such as a trailing
// newline in the file, is dropped. Both empty means no token.
func LoadToken(value, file string) (string, error) {
	if value != "" && file != "" {
		return "", errors.New("both an auth token and an auth token file are set: use only one (MCP_SANDBOX_AUTH_TOKEN / --auth-token or MCP_SANDBOX_AUTH_TOKEN_FILE / --auth-token-file)")
	}
	token := value
	source := "the auth token (MCP_SANDBOX_AUTH_TOKEN / --auth-token)"
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the auth token file: %w", err)
		}
		token = string(data)
		source = fmt.Sprintf("the auth token file %s", file)
		if strings.TrimSpace(token) == "" {
			return "", fmt.Errorf("%s is empty: put the token in it, for example with `openssl rand -hex 32 > %s`", source, file)
		}
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", nil
	}
	if len(token) < MinTokenLength {
		return "", fmt.Errorf("%s is %d characters long; use at least %d random characters, for example from `openssl rand -hex 32`", source, len(token), MinTokenLength)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("%s contains whitespace, which cannot be sent in an Authorization header", source)
	}
	return token, nil
}

// CheckBind refuses to serve a non-loopback address without a token: anyone
// who can reach such an address could run commands in sandboxes.
func CheckBind(addr, token string) error {
	if token != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: want host:port, for example 127.0.0.1:8080", addr)
	}
	if IsLoopbackHost(host) {
		return nil
	}
	shown := host
	if shown == "" {
		shown = "all interfaces"
	}
	return fmt.Errorf("refusing to listen on %s (%s) without an auth token: anyone who can reach it could run commands in your sandboxes. "+
		"Set MCP_SANDBOX_AUTH_TOKEN or MCP_SANDBOX_AUTH_TOKEN_FILE (--auth-token-file), or listen on 127.0.0.1", addr, shown)
}

// IsLoopbackHost reports whether host (from a listen address) is only
// reachable from this machine: "localhost" or a loopback IP. An empty host
// or 0.0.0.0 means every interface, and any other name may resolve anywhere.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
