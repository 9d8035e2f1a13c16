package providers

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Setting is one configuration value a driver declares when it registers.
// The server turns every declared setting into an entry of --help and the
// README table, reads it with the same precedence as its own settings
// (flag > environment > .env file > Default), and hands the merged value to
// the driver through Config.Get.
type Setting struct {
	// Env is the environment variable, e.g. "MCP_SANDBOX_DOCKER_IMAGE" or a
	// vendor's own "DAYTONA_API_KEY".
	Env string
	// Flag is the command-line flag without dashes ("docker-image"); empty
	// means the setting is read from the environment and .env only.
	Flag string
	// Default applies when nothing sets the value.
	Default string
	// Usage says what the value means, in one line.
	Usage string
	// Secret values get no flag (flags show in ps) and are never printed.
	Secret bool
}

// Driver is what a driver package registers.
type Driver struct {
	// Settings lists every value Open reads through Config.
	Settings []Setting
	// Open makes the driver. It fails fast, with a message naming the
	// setting to fix, when configuration is missing or the backend cannot
	// be reached; ctx bounds that first contact.
	Open func(ctx context.Context, cfg Config) (Provider, error)
}

// Config is what a driver's Open gets: its settings merged from flags, the
// environment and the .env file, this server's ID, and a logger.
type Config struct {
	// Getenv returns a setting's merged value by its environment name, or
	// "" when nothing sets it (Get then falls back to the declared Default).
	Getenv func(env string) string
	// Source, when set, names where a setting's value came from ("--flag",
	// "the environment", "the .env file"), for error messages.
	Source func(env string) string
	// ServerID names this server on every sandbox it creates, so that its
	// reaper only ever touches its own (MCP_SANDBOX_SERVER_ID, read once by
	// the server; the host name when unset).
	ServerID string
	Logger   *slog.Logger

	defaults map[string]string // the registered driver's Setting defaults
}

// Get returns the setting's value: the merged value, else the declared
// default, else "". Surrounding spaces are trimmed.
func (c Config) Get(env string) string {
	if c.Getenv != nil {
		if v := strings.TrimSpace(c.Getenv(env)); v != "" {
			return v
		}
	}
	return c.defaults[env]
}

// from names where env's value came from, for errors.
func (c Config) from(env string) string {
	if c.Getenv == nil || strings.TrimSpace(c.Getenv(env)) == "" {
		return "the default"
	}
	if c.Source != nil {
		if s := c.Source(env); s != "" {
			return s
		}
	}
	return "the environment"
}

// Invalid is the error for a bad setting: it names the setting, the value,
// where the value came from, and what a valid one looks like.
func (c Config) Invalid(env, want string) error {
	return Errorf(ErrInvalidArgument, "invalid value %q for %s (from %s): %s", c.Get(env), env, c.from(env), want)
}

// Bool parses a boolean setting.
func (c Config) Bool(env string) (bool, error) {
	b, err := strconv.ParseBool(c.Get(env))
	if err != nil {
		return false, c.Invalid(env, "use true or false")
	}
	return b, nil
}

// Duration parses a duration setting ("90s", "5m") that must lie in
// [min, max] (max 0: no upper bound).
func (c Config) Duration(env string, min, max time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(c.Get(env))
	if err != nil || d < min || (max > 0 && d > max) {
		want := fmt.Sprintf("use a duration of at least %s, such as 90s, 5m or 1h", shortDuration(min))
		if max > 0 {
			want = fmt.Sprintf("use a duration from %s to %s, such as 90s, 5m or 1h", shortDuration(min), shortDuration(max))
		}
		return 0, c.Invalid(env, want)
	}
	return d, nil
}

var (
	mu      sync.RWMutex
	drivers = map[string]Driver{}
)

// Register makes a driver available by name. It panics on a duplicate or a
// driver without Open, like database/sql.Register.
func Register(name string, d Driver) {
	mu.Lock()
	defer mu.Unlock()
	if d.Open == nil {
		panic("providers: Register called with a nil Open for " + name)
	}
	if _, dup := drivers[name]; dup {
		panic("providers: Register called twice for " + name)
	}
	drivers[name] = d
}

// Names lists the registered drivers, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Settings returns the settings the named driver declared.
func Settings(name string) []Setting {
	mu.RLock()
	defer mu.RUnlock()
	return append([]Setting(nil), drivers[name].Settings...)
}

// Open opens the named driver, ready to use as a Backend.
func Open(ctx context.Context, name string, cfg Config) (*Backend, error) {
	mu.RLock()
	d, ok := drivers[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown provider %q (available: %s)", name, strings.Join(Names(), ", "))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	driver, err := d.Open(ctx, cfg.WithDefaults(d.Settings))
	if err != nil {
		return nil, err
	}
	return NewBackend(driver), nil
}

// WithDefaults returns cfg with the settings' defaults behind its values;
// Open applies the registered driver's, and a driver's own constructor may
// apply them when called directly.
func (c Config) WithDefaults(settings []Setting) Config {
	defaults := make(map[string]string, len(c.defaults)+len(settings))
	for k, v := range c.defaults {
		defaults[k] = v
	}
	for _, s := range settings {
		defaults[s.Env] = s.Default
	}
	c.defaults = defaults
	return c
}

// shortDuration prints 1m and 24h where time.Duration prints 1m0s and 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
