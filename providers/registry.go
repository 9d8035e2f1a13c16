package providers

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
)

// Config is what a driver factory gets: settings by their environment-variable
// name (flags, the environment and .env already merged by the caller), and a
// logger.
type Config struct {
	Getenv func(key string) string
	Logger *slog.Logger
}

// Get returns the setting, or "" when unset.
func (c Config) Get(key string) string {
	if c.Getenv == nil {
		return ""
	}
	return c.Getenv(key)
}

// Factory opens a driver. It fails fast, with a message naming the setting to
// fix, when configuration is missing or the backend cannot be reached.
type Factory func(cfg Config) (Provider, error)

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a driver available by name. It panics on a duplicate, like
// database/sql.Register.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic("providers: Register called twice for " + name)
	}
	factories[name] = f
}

// Names lists the registered drivers, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open opens the named driver.
func Open(name string, cfg Config) (Provider, error) {
	mu.RLock()
	f, ok := factories[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown provider %q (available: %v)", name, Names())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return f(cfg)
}
