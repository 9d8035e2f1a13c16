package providers

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestOpenAppliesDeclaredDefaultsAndNamesSources(t *testing.T) {
	var got Config
	Register("registry-test", Driver{
		Settings: []Setting{
			{Env: "RT_MODE", Default: "fast"},
			{Env: "RT_ON", Default: "maybe"},
			{Env: "RT_WAIT", Default: "5m"},
		},
		Open: func(ctx context.Context, cfg Config) (Provider, error) { got = cfg; return nil, nil },
	})
	set := map[string]string{"RT_ON": "yes please", "RT_WAIT": " 2s "}
	if _, err := Open(context.Background(), "registry-test", Config{
		Getenv: func(k string) string { return set[k] },
		Source: func(k string) string { return "--rt-flag" },
	}); err != nil {
		t.Fatal(err)
	}
	if v := got.Get("RT_MODE"); v != "fast" {
		t.Errorf("unset RT_MODE = %q, want its declared default", v)
	}
	if _, err := got.Bool("RT_ON"); err == nil || !strings.Contains(err.Error(), `"yes please" for RT_ON (from --rt-flag): use true or false`) {
		t.Errorf("bad boolean: %v", err)
	}
	if _, err := got.Duration("RT_WAIT", time.Minute, time.Hour); err == nil || !strings.Contains(err.Error(), `"2s" for RT_WAIT (from --rt-flag): use a duration from 1m to 1h`) {
		t.Errorf("short duration: %v", err)
	}
	if d, err := got.Duration("RT_WAIT", time.Second, 0); err != nil || d != 2*time.Second {
		t.Errorf("Duration = %v, %v", d, err)
	}
	if _, err := Open(context.Background(), "no-such-driver", Config{}); err == nil || !strings.Contains(err.Error(), "registry-test") {
		t.Errorf("unknown driver: want an error listing the registered ones, got %v", err)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	d := Driver{Open: func(context.Context, Config) (Provider, error) { return nil, nil }}
	Register("registry-twice", d)
	defer func() {
		if recover() == nil {
			t.Error("a second Register of the same name did not panic")
		}
	}()
	Register("registry-twice", d)
}
