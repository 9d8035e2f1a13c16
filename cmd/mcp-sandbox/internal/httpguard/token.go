package httpguard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// CheckBind refuses to serve a non-loopback address without a token (a Unix
// socket is guarded by its file mode): anyone
// who can reach such an address could run commands in sandboxes.
func CheckBind(addr, token string) error {
	if token != "" || strings.HasPrefix(addr, "unix:") {
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
		"Drop --auth none (MCP_SANDBOX_AUTH) to use a generated token, set MCP_SANDBOX_AUTH_TOKEN or MCP_SANDBOX_AUTH_TOKEN_FILE, or listen on 127.0.0.1", addr, shown)
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

// TokenFileName is the file in the state dir holding the token the server
// generates when none is configured.
const TokenFileName = "http-token"

// LoadOrCreateTokenFile returns the token in path, creating the file with a
// new random token (readable by this user only) when it does not exist, so
// that clients configured once keep working across restarts. An existing
// file that other users could read, or that another user owns, is refused:
// its token may already be known to them.
func LoadOrCreateTokenFile(path string) (token string, created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("cannot create the directory for the HTTP token file: %w (set --state-dir / MCP_SANDBOX_STATE_DIR, or configure a token with MCP_SANDBOX_AUTH_TOKEN_FILE)", err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", false, err
	}
	fresh := hex.EncodeToString(buf)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		_, werr := f.WriteString(fresh + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			return "", false, fmt.Errorf("writing the HTTP token file %s: %w", path, werr)
		}
		return fresh, true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return "", false, fmt.Errorf("creating the HTTP token file %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return "", false, fmt.Errorf("reading the HTTP token file %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || (ok && int(st.Uid) != os.Getuid()) {
		return "", false, fmt.Errorf("the HTTP token file %s is not a regular file that only this user (uid %d) can read (mode %v): others may know its token; remove it and restart to get a new one", path, os.Getuid(), fi.Mode())
	}
	token, err = LoadToken("", path)
	if err != nil {
		return "", false, fmt.Errorf("%w (or remove the file and restart to get a new token)", err)
	}
	return token, false, nil
}
