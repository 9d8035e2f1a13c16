package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/cmd/mcp-sandbox/internal/httpguard"
	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/local"
	"github.com/mcp-sandbox/mcp-sandbox/tools"
)

// setting is one configuration value: a flag mirrored by an environment
// variable. Precedence: flag > environment > .env file (when one is named
// with --env-file) > default.
type setting struct {
	flag, env, def, usage string
	isBool                bool
}

var settings = []setting{
	{flag: "http", env: "MCP_SANDBOX_HTTP", usage: "serve streamable HTTP at `ADDR`/mcp instead of stdio (e.g. 127.0.0.1:8080; a bare :PORT binds loopback; unix:/path.sock serves a Unix socket only this user may open)"},
	{flag: "auth", env: "MCP_SANDBOX_AUTH", def: "token", usage: "HTTP `auth`: token (the configured one, else one generated into <state-dir>/http-token) or none (loopback or Unix socket only: every local user could run commands)"},
	{flag: "provider", env: "MCP_SANDBOX_PROVIDER", def: "local", usage: "default sandbox `provider`"},
	{flag: "providers", env: "MCP_SANDBOX_PROVIDERS", usage: "comma-separated extra `providers` sandbox_create may choose (the default is always allowed)"},
	{flag: "state-dir", env: "MCP_SANDBOX_STATE_DIR", usage: "`directory` for local sandboxes (default $XDG_STATE_HOME/mcp-sandbox or ~/.local/state/mcp-sandbox)"},
	{flag: "keep-sandboxes", env: "MCP_SANDBOX_KEEP_SANDBOXES", def: "false", isBool: true, usage: "keep a session's sandboxes when the session ends"},
	{flag: "max-sandboxes-per-session", env: "MCP_SANDBOX_MAX_SANDBOXES_PER_SESSION", def: "10", usage: "most sandboxes one session may hold, as a number `N` (0 = no limit)"},
	{flag: "session-idle-timeout", env: "MCP_SANDBOX_SESSION_IDLE_TIMEOUT", def: "30m", usage: "HTTP sessions idle for this `duration` end and release their sandboxes"},
	{flag: "command-timeout", env: "MCP_SANDBOX_COMMAND_TIMEOUT", def: "2m", usage: "run_command timeout, as a `duration`, when the call sets none"},
	{flag: "max-command-timeout", env: "MCP_SANDBOX_MAX_COMMAND_TIMEOUT", def: "1h", usage: "largest timeout (a `duration`) a call may ask for"},
	{flag: "wait-seconds", env: "MCP_SANDBOX_WAIT_SECONDS", def: "45", usage: "how long run_command waits, in seconds or as a `duration`, before returning a process handle for a command still running (keep it below the client's request timeout, often 60s)"},
	{flag: "max-output-bytes", env: "MCP_SANDBOX_MAX_OUTPUT_BYTES", def: "64KiB", usage: "run_command output kept per stream, as a `size` (head and tail)"},
	{flag: "max-process-output", env: "MCP_SANDBOX_MAX_PROCESS_OUTPUT", def: "64MiB", usage: "output kept on disk per stream of each process, as a `size` (head and tail), for paging with process_output"},
	{flag: "max-file-bytes", env: "MCP_SANDBOX_MAX_FILE_BYTES", def: "32MiB", usage: "largest file (a `size`) read_file opens and write_file accepts"},
	{flag: "max-read-bytes", env: "MCP_SANDBOX_MAX_READ_BYTES", def: "256KiB", usage: "most text (a `size`) read_file returns in one call; the rest is paged with offset"},
	{flag: "auth-token", env: "MCP_SANDBOX_AUTH_TOKEN", usage: "bearer `token` HTTP clients must send as \"Authorization: Bearer <token>\" (at least 16 characters; prefer the env var or --auth-token-file, since flags show in ps)"},
	{flag: "auth-token-file", env: "MCP_SANDBOX_AUTH_TOKEN_FILE", usage: "read the HTTP bearer token from this `file` (surrounding whitespace ignored)"},
	{flag: "allowed-origins", env: "MCP_SANDBOX_ALLOWED_ORIGINS", usage: "comma-separated browser `origins` (scheme://host[:port]) allowed besides localhost, 127.0.0.1 and [::1]; others get 403"},
	{flag: "max-sessions", env: "MCP_SANDBOX_MAX_SESSIONS", def: "100", usage: "most live HTTP sessions, as a number `N`; a new session then ends the longest-idle one (see --session-evict-idle), or gets 503 (0 = no limit)"},
	{flag: "max-sessions-per-client", env: "MCP_SANDBOX_MAX_SESSIONS_PER_CLIENT", def: "50", usage: "most live HTTP sessions of one client (its address and clientInfo.name), as a number `N`; its next session ends its longest-idle one (0 = no limit)"},
	{flag: "session-evict-idle", env: "MCP_SANDBOX_SESSION_EVICT_IDLE", def: "5m", usage: "at a session cap, a session idle this long (a `duration`) may be ended, with its sandboxes, to make room for a new one"},
	{flag: "max-body-bytes", env: "MCP_SANDBOX_MAX_BODY_BYTES", usage: "largest HTTP request body, as a `size`; larger ones get 413 (default: 1.5 x --max-file-bytes + 1MiB, room for a base64 write_file of the largest file)"},
	{flag: "conformance-fixtures", env: "MCP_SANDBOX_CONFORMANCE_FIXTURES", def: "false", isBool: true, usage: "also serve the fixed test tools, resources and prompts of the MCP conformance suite (for testing only)"},
	{flag: "session-store", env: "MCP_SANDBOX_SESSION_STORE", def: "memory", usage: "where sessions are kept: memory, or a Redis `URL` (redis://[user:password@]host:6379/0, rediss:// for TLS) shared by HTTP servers"},
	{flag: "session-name", env: "MCP_SANDBOX_SESSION_NAME", usage: "stdio only: keep the session under this `name` in the state dir, so a server started again with the same name (and --keep-sandboxes) finds its sandboxes and processes"},
	{flag: "server-id", env: "MCP_SANDBOX_SERVER_ID", usage: "`id` labelled on every sandbox this server creates (default: the host name)"},
	{flag: "log-level", env: "MCP_SANDBOX_LOG_LEVEL", def: "info", usage: "`level`: debug, info, warn or error"},
	{flag: "log-format", env: "MCP_SANDBOX_LOG_FORMAT", def: "text", usage: "`format`: text (coloured on a terminal) or json"},
	{flag: "env-file", env: "MCP_SANDBOX_ENV_FILE", usage: "read settings from this .env `file` (none is read unless named; --env-file .env reads the working directory's)"},
}

// Config is the parsed configuration.
type Config struct {
	HTTPAddr           string
	Provider           string
	ExtraProviders     []string
	KeepSandboxes      bool
	MaxSandboxes       int
	SessionIdleTimeout time.Duration
	SessionStore       string // "memory" or a Redis URL
	SessionName        string // stdio: the name the session is kept under, or ""
	Limits             tools.Limits
	ServerID           string
	// HTTP hardening (see internal/httpguard).
	AuthToken string
	// AuthNone is an explicit --auth none: no token on a local listener.
	AuthNone bool
	// TokenFile is the generated token's file (see ensureToken), or "".
	TokenFile      string
	AllowedOrigins httpguard.Origins
	MaxSessions    int
	// MaxSessionsPerClient caps the sessions of one client (httpguard).
	MaxSessionsPerClient int
	// SessionEvictIdle is how idle a session must be to make room.
	SessionEvictIdle time.Duration
	MaxBodyBytes     int64
	// ConformanceFixtures registers the conformance suite's test tools.
	ConformanceFixtures bool
	LogLevel            slog.Level
	LogJSON             bool
	// Getenv looks a setting up by its environment name: the parsed
	// settings, then the environment, then the .env file. Providers read
	// their own variables (E2B_API_KEY, DOCKER_HOST, ...) through it.
	Getenv func(string) string
	// Source names where a setting's value came from, for errors.
	Source func(string) string

	// dotenv is what the .env file named envFile set, for the warnings of
	// unknownSettings.
	dotenv  map[string]string
	envFile string
}

// errHelp means --help was asked for and printed.
var errHelp = errors.New("help requested")

// errVersion means --version was asked for and printed.
var errVersion = errors.New("version requested")

// loadConfig parses flags, the environment and the .env file. Every error
// names the setting and what a valid value looks like.
func loadConfig(args []string, lookupEnv func(string) (string, bool), stdout io.Writer) (Config, error) {
	flags := flag.NewFlagSet("mcp-sandbox", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	flagVals := map[string]*string{}
	all := append(append([]setting(nil), settings...), driverSettings()...)
	for _, s := range all {
		if s.flag == "" {
			continue
		}
		v := new(string)
		flagVals[s.flag] = v
		usage := s.usage + " [env " + s.env + "]"
		if s.isBool {
			flags.Var(boolFlag{v}, s.flag, usage)
		} else {
			flags.StringVar(v, s.flag, s.def, usage)
		}
	}
	showVersion := flags.Bool("version", false, "print the version and exit")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(flags, stdout)
			return Config{}, errHelp
		}
		return Config{}, fmt.Errorf("%v (run mcp-sandbox --help for the flags)", err)
	}
	if flags.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (run mcp-sandbox --help for the flags)", flags.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "mcp-sandbox", version)
		return Config{}, errVersion
	}
	explicit := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	// The .env file is the lowest layer; the environment always wins over it.
	envFile := strings.TrimSpace(get(settingFor("env-file"), flagVals, explicit, lookupEnv, nil))
	dotenv, err := readEnvFile(envFile)
	if err != nil {
		return Config{}, err
	}
	values := map[string]string{}
	for _, s := range all {
		values[s.env] = get(s, flagVals, explicit, lookupEnv, dotenv)
	}
	source := func(key string) string {
		for _, s := range all {
			if s.env == key && s.flag != "" && explicit[s.flag] {
				return "--" + s.flag
			}
		}
		if _, ok := lookupEnv(key); ok {
			return "the environment"
		}
		if _, ok := dotenv[key]; ok {
			return "the .env file " + envFile
		}
		return "the default"
	}
	getenv := func(key string) string {
		if v, ok := values[key]; ok {
			return v
		}
		if v, ok := lookupEnv(key); ok {
			return v
		}
		return dotenv[key]
	}

	c := Config{Getenv: getenv, Source: source, Limits: tools.DefaultLimits, dotenv: dotenv, envFile: envFile}
	p := parser{values: values, source: source}
	c.HTTPAddr = p.addr("http")
	c.Provider = strings.TrimSpace(values["MCP_SANDBOX_PROVIDER"])
	for _, name := range strings.Split(values["MCP_SANDBOX_PROVIDERS"], ",") {
		if name = strings.TrimSpace(name); name != "" && name != c.Provider {
			c.ExtraProviders = append(c.ExtraProviders, name)
		}
	}
	c.KeepSandboxes = p.bool("keep-sandboxes")
	c.MaxSandboxes = p.int("max-sandboxes-per-session", 0)
	c.SessionIdleTimeout = p.duration("session-idle-timeout")
	c.Limits.DefaultTimeout = p.duration("command-timeout")
	c.Limits.MaxTimeout = p.duration("max-command-timeout")
	if source("MCP_SANDBOX_COMMAND_TIMEOUT") == "the default" {
		// Lowering the cap lowers the default with it.
		c.Limits.DefaultTimeout = min(c.Limits.DefaultTimeout, c.Limits.MaxTimeout)
	}
	c.Limits.Wait = p.duration("wait-seconds")
	c.Limits.MaxOutputBytes = int(p.size("max-output-bytes", 256))
	c.Limits.MaxProcessOutputBytes = p.size("max-process-output", 4096)
	fileBytes := p.size("max-file-bytes", 1)
	c.Limits.MaxReadBytes, c.Limits.MaxWriteBytes = fileBytes, int(fileBytes)
	c.Limits.MaxReturnBytes = int(p.size("max-read-bytes", 1024))
	c.MaxSessions = p.int("max-sessions", 0)
	c.MaxSessionsPerClient = p.int("max-sessions-per-client", 0)
	c.SessionEvictIdle = p.duration("session-evict-idle")
	if _, v := p.raw("max-body-bytes"); v == "" {
		c.MaxBodyBytes = fileBytes + fileBytes/2 + 1<<20
	} else {
		c.MaxBodyBytes = p.size("max-body-bytes", 1024)
	}
	c.ConformanceFixtures = p.bool("conformance-fixtures")
	if origins, err := httpguard.ParseOrigins(values["MCP_SANDBOX_ALLOWED_ORIGINS"]); err != nil {
		p.fail(settingFor("allowed-origins"), values["MCP_SANDBOX_ALLOWED_ORIGINS"], err.Error())
	} else {
		c.AllowedOrigins = origins
	}
	if token, err := httpguard.LoadToken(values["MCP_SANDBOX_AUTH_TOKEN"], strings.TrimSpace(values["MCP_SANDBOX_AUTH_TOKEN_FILE"])); err != nil {
		if p.err == nil {
			p.err = err
		}
	} else {
		c.AuthToken = token
	}
	c.AuthNone = p.oneOf("auth", "token", "none") == "none"
	if p.err == nil && c.AuthNone && c.AuthToken != "" {
		p.fail(settingFor("auth"), "none", "a token is configured too (MCP_SANDBOX_AUTH_TOKEN or MCP_SANDBOX_AUTH_TOKEN_FILE): drop one of them")
	}
	if p.err == nil && c.HTTPAddr != "" && c.AuthNone {
		p.err = httpguard.CheckBind(c.HTTPAddr, c.AuthToken)
	}
	if store, err := parseSessionStore(values["MCP_SANDBOX_SESSION_STORE"], c.HTTPAddr); err != nil {
		p.fail(settingFor("session-store"), values["MCP_SANDBOX_SESSION_STORE"], err.Error())
	} else {
		c.SessionStore = store
	}
	if name, err := parseSessionName(values["MCP_SANDBOX_SESSION_NAME"], c.HTTPAddr); err != nil {
		p.fail(settingFor("session-name"), values["MCP_SANDBOX_SESSION_NAME"], err.Error())
	} else {
		c.SessionName = name
	}
	c.LogLevel = p.level("log-level")
	c.LogJSON = p.oneOf("log-format", "text", "json") == "json"
	if values["MCP_SANDBOX_SERVER_ID"] == "" { // providers label with it too
		values["MCP_SANDBOX_SERVER_ID"], _ = os.Hostname()
	}
	c.ServerID = values["MCP_SANDBOX_SERVER_ID"]
	if c.Limits.DefaultTimeout > c.Limits.MaxTimeout {
		p.conflict("command-timeout", c.Limits.DefaultTimeout.String(), "must not exceed", "max-command-timeout", c.Limits.MaxTimeout.String(), "")
	}
	// mcp-go sweeps a session by the start of its last request, so a call
	// that waits longer than the idle timeout loses its session mid-call.
	if c.SessionIdleTimeout <= c.Limits.Wait {
		p.conflict("session-idle-timeout", c.SessionIdleTimeout.String(), "must be longer than", "wait-seconds", c.Limits.Wait.String(), "or a waiting call would lose its session")
	}
	if c.Limits.MaxProcessOutputBytes < int64(c.Limits.MaxOutputBytes) {
		p.conflict("max-process-output", strconv.FormatInt(c.Limits.MaxProcessOutputBytes, 10)+" bytes", "must be at least",
			"max-output-bytes", strconv.Itoa(c.Limits.MaxOutputBytes)+" bytes", "or run_command could not show what it keeps")
	}
	p.checkStateDir(c.Getenv)
	return c, p.err
}

// ensureToken gives an HTTP server without a configured token and without
// --auth none the token in <state-dir>/http-token, generated on first use.
func ensureToken(c *Config) error {
	if c.HTTPAddr == "" || c.AuthToken != "" || c.AuthNone {
		return nil
	}
	dir := c.Getenv(local.EnvStateDir)
	if dir == "" {
		d, err := local.DefaultStateDir(c.Getenv)
		if err != nil {
			return fmt.Errorf("no place for the generated HTTP token: %w, or configure one with MCP_SANDBOX_AUTH_TOKEN_FILE", err)
		}
		dir = d
	}
	path := filepath.Join(dir, httpguard.TokenFileName)
	token, _, err := httpguard.LoadOrCreateTokenFile(path)
	if err != nil {
		return err
	}
	c.AuthToken, c.TokenFile = token, path
	return nil
}

func settingFor(flagName string) setting {
	for _, s := range settings {
		if s.flag == flagName {
			return s
		}
	}
	panic("no setting " + flagName)
}

// driverSettings are the settings every registered driver declared, as
// flags (when they have one) and environment variables. Their defaults stay
// with the driver (providers.Open applies them), so that an unset value
// reads as unset here.
func driverSettings() []setting {
	var out []setting
	for _, name := range providers.Names() {
		for _, ds := range providers.Settings(name) {
			s := setting{env: ds.Env, usage: ds.Usage}
			if !ds.Secret {
				s.flag = ds.Flag
			}
			if ds.Default != "" {
				s.usage += " (default " + ds.Default + ")"
			}
			out = append(out, s)
		}
	}
	return out
}

func get(s setting, flagVals map[string]*string, explicit map[string]bool, lookupEnv func(string) (string, bool), dotenv map[string]string) string {
	if s.flag != "" && explicit[s.flag] {
		return *flagVals[s.flag]
	}
	if v, ok := lookupEnv(s.env); ok {
		return v
	}
	if v, ok := dotenv[s.env]; ok {
		return v
	}
	return s.def
}

func printHelp(flags *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, `mcp-sandbox: an MCP server that gives AI agents sandboxes.

Usage:
  mcp-sandbox [flags]                 serve MCP over stdio (attach it to an MCP client)
  mcp-sandbox --http 127.0.0.1:8080   serve streamable HTTP at http://127.0.0.1:8080/mcp
                                      clients send the token the server prints on start-up
  MCP_SANDBOX_AUTH_TOKEN_FILE=/etc/mcp-sandbox/token mcp-sandbox --http 0.0.0.0:8080
                                      serve other machines with a token of your own
  mcp-sandbox --http unix:$XDG_RUNTIME_DIR/mcp-sandbox.sock
                                      serve a Unix socket only this user can open

Every flag can also be set by the environment variable shown, or in a .env file
named with --env-file (none is read unless named).
Precedence: flag > environment > .env file > default.

Flags:
`)
	flags.SetOutput(w)
	flags.PrintDefaults()
	flags.SetOutput(io.Discard)
	fmt.Fprint(w, "\nProvider settings read from the environment or .env only:\n")
	for _, name := range providers.Names() {
		for _, s := range providers.Settings(name) {
			if s.Flag == "" || s.Secret {
				fmt.Fprintf(w, "  %-28s %s: %s\n", s.Env, name, s.Usage)
			}
		}
	}
}

// boolFlag is a flag.Value that records "true"/"false" as text, so that
// booleans go through the same precedence and validation as other settings.
type boolFlag struct{ v *string }

func (b boolFlag) String() string {
	if b.v == nil {
		return ""
	}
	return *b.v
}
func (b boolFlag) Set(s string) error { *b.v = s; return nil }
func (b boolFlag) IsBoolFlag() bool   { return true }

// parser turns setting values into types, keeping the first error.
type parser struct {
	values map[string]string
	source func(env string) string
	err    error
}

// fail records that setting s has a bad value, and where it came from
// when that is not the command line.
func (p *parser) fail(s setting, v, want string) {
	if p.err != nil {
		return
	}
	from := ""
	if src := p.source(s.env); src != "--"+s.flag && src != "the default" {
		from = ", from " + src
	}
	p.err = fmt.Errorf("invalid value %q for --%s (%s%s): %s", v, s.flag, s.env, from, want)
}

// conflict records that setting a "must ..." relative to setting b, blaming
// the one the operator set: a default is never at fault for a value that
// was chosen against it.
// The values are given as they read best (45s, not 45).
func (p *parser) conflict(a, aVal, must, b, bVal, why string) {
	sa, rawA := p.raw(a)
	sb, rawB := p.raw(b)
	if why != "" {
		why = ", " + why
	}
	if p.source(sa.env) == "the default" && p.source(sb.env) != "the default" {
		p.fail(sb, rawB, fmt.Sprintf("--%s (default %s) %s it%s; set --%s too", a, aVal, must, why, a))
		return
	}
	p.fail(sa, rawA, fmt.Sprintf("%s --%s (%s)%s", must, b, bVal, why))
}

// checkStateDir refuses, at start-up rather than at the first sandbox, a
// state dir the server cannot use: a relative path, something that is not
// a directory, or a directory this user cannot write. One that does not
// exist yet is made on first use.
func (p *parser) checkStateDir(getenv func(string) string) {
	s, dir := p.raw("state-dir")
	if dir == "" {
		d, err := local.DefaultStateDir(getenv)
		if err != nil {
			return // whatever needs a state dir says so, naming the setting
		}
		dir = d
	}
	if !filepath.IsAbs(dir) {
		p.fail(s, dir, "use an absolute path")
		return
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		p.fail(s, dir, err.Error())
	case !fi.IsDir():
		p.fail(s, dir, "it is not a directory; choose a directory")
	default:
		// Try it: permission bits do not tell about read-only mounts, ACLs
		// or security modules.
		f, err := os.CreateTemp(dir, ".mcp-sandbox-write-test-*")
		if err != nil {
			p.fail(s, dir, fmt.Sprintf("this user cannot write there (%v); make it writable or choose another directory", errors.Unwrap(err)))
			return
		}
		f.Close()
		os.Remove(f.Name())
	}
}

func (p *parser) raw(flagName string) (setting, string) {
	s := settingFor(flagName)
	return s, strings.TrimSpace(p.values[s.env])
}

func (p *parser) bool(name string) bool {
	s, v := p.raw(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(s, v, "use true or false")
	}
	return b
}

func (p *parser) int(name string, min int) int {
	s, v := p.raw(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		p.fail(s, v, fmt.Sprintf("use a whole number of at least %d", min))
	}
	return n
}

func (p *parser) duration(name string) time.Duration {
	s, v := p.raw(name)
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
		return time.Duration(secs * float64(time.Second))
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(s, v, "use a positive duration such as 90s, 5m or 1h")
	}
	return d
}

// size parses bytes with an optional KiB/MiB/GiB (or K/M/G) suffix.
func (p *parser) size(name string, min int64) int64 {
	s, v := p.raw(name)
	num, mult := strings.ToUpper(v), int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n*mult < min || n > (1<<62)/mult {
		least := strconv.FormatInt(min, 10) + " bytes"
		if min == 1 {
			least = "1 byte"
		}
		p.fail(s, v, "use a size of at least "+least+", such as 65536, 64KiB or 32MiB")
	}
	return n * mult
}

func (p *parser) level(name string) slog.Level {
	s, v := p.raw(name)
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		p.fail(s, v, "use debug, info, warn or error")
	}
	return l
}

func (p *parser) oneOf(name string, choices ...string) string {
	s, v := p.raw(name)
	for _, c := range choices {
		if strings.EqualFold(v, c) {
			return c
		}
	}
	p.fail(s, v, "use one of "+strings.Join(choices, ", "))
	return choices[0]
}

// addr normalises the HTTP address; a missing host means loopback, never
// every interface. unix:/path is a Unix socket.
func (p *parser) addr(name string) string {
	s, v := p.raw(name)
	if v == "" {
		return ""
	}
	if path, ok := strings.CutPrefix(v, "unix:"); ok {
		if !filepath.IsAbs(path) {
			p.fail(s, v, "use unix:/absolute/path.sock")
			return ""
		}
		return "unix:" + filepath.Clean(path)
	}
	if _, err := strconv.Atoi(v); err == nil {
		v = ":" + v
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		p.fail(s, v, "use HOST:PORT such as 127.0.0.1:8080")
		return ""
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.fail(s, v, "the port must be a number from 0 to 65535")
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
