package providers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/daytona"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/e2b"
	_ "github.com/mcp-sandbox/mcp-sandbox/providers/runloop"
)

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// get makes one real request and returns its transport error.
func get(t *testing.T, c *http.Client, url string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s answered %s; the case wants a transport error", url, resp.Status)
	}
	return err
}

func TestTransient(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	plainSrv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plainSrv.Close)
	// A server that accepts and hangs up without answering: a dropped connection.
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hangup.Close() })
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			io.ReadAll(io.LimitReader(c, 1)) // the request has begun
			c.Close()
		}
	}()
	plain := &http.Client{}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name                 string
		err                  func() error
		unreachable, retries bool
	}{
		{"connection refused", func() error { return get(t, plain, "http://"+closedAddr(t)+"/") }, true, false},
		{"unknown host", func() error { return get(t, plain, "http://no-such-host.invalid/") }, true, false},
		{"untrusted certificate", func() error { return get(t, plain, tlsSrv.URL) }, false, false},
		{"TLS to a plain HTTP server", func() error { return get(t, plain, "https://"+plainSrv.Listener.Addr().String()) }, false, false},
		{"unsupported scheme", func() error { return get(t, plain, "ftp://example.com/") }, false, false},
		{"connection dropped", func() error { return get(t, plain, "http://"+hangup.Addr().String()+"/") }, false, true},
		{"attempt timed out", func() error { return fmt.Errorf("post: %w", context.DeadlineExceeded) }, false, true},
		{"caller cancelled", func() error { return fmt.Errorf("post: %w", cancelled.Err()) }, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if got := providers.Unreachable(err); got != tc.unreachable {
				t.Errorf("Unreachable(%v) = %v, want %v", err, got, tc.unreachable)
			}
			if got := providers.Transient(err); got != tc.retries {
				t.Errorf("Transient(%v) = %v, want %v", err, got, tc.retries)
			}
		})
	}
}

func TestTransientStatus(t *testing.T) {
	for status, want := range map[int]bool{
		400: false, 401: false, 403: false, 404: false, 409: false, 422: false,
		408: true, 429: true, 500: true, 502: true, 503: true, 504: true,
		501: false, 505: false,
	} {
		if got := providers.TransientStatus(status); got != want {
			t.Errorf("TransientStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

// hosted names each HTTP driver's settings for an API at url, and its
// API's answer to a listing that found nothing.
var hosted = []struct {
	name      string
	env       func(url string) map[string]string
	emptyList string
}{
	{"e2b", func(url string) map[string]string {
		return map[string]string{"E2B_API_KEY": "k", "E2B_API_URL": url, "E2B_SANDBOX_URL": url}
	}, `[]`},
	{"daytona", func(url string) map[string]string {
		return map[string]string{"DAYTONA_API_KEY": "k", "DAYTONA_API_URL": url}
	}, `{"items":[]}`},
	{"runloop", func(url string) map[string]string {
		return map[string]string{"RUNLOOP_API_KEY": "k", "RUNLOOP_BASE_URL": url}
	}, `{"devboxes":[],"has_more":false}`},
}

func openHosted(t *testing.T, name string, env map[string]string) *providers.Backend {
	t.Helper()
	b, err := providers.Open(context.Background(), name, providers.Config{Getenv: func(k string) string { return env[k] }, ServerID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestHostedRefusalsAreNotRetried: a rejected key is sent once and reads
// as a refusal to fix, never as something that may pass; an API where
// nothing listens fails in one attempt, well within seconds.
func TestHostedRefusalsAreNotRetried(t *testing.T) {
	for _, d := range hosted {
		t.Run(d.name+"/rejected key", func(t *testing.T) {
			var creates atomic.Int32
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet { // listing what a failed create left: nothing
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, d.emptyList)
					return
				}
				creates.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"message":"invalid API key"}`)
			}))
			t.Cleanup(api.Close)
			b := openHosted(t, d.name, d.env(api.URL))
			_, err := b.Create(t.Context(), providers.CreateOptions{})
			if !errors.Is(err, providers.ErrDenied) || errors.Is(err, providers.ErrUnavailable) {
				t.Fatalf("create with a rejected key: %v; want a permission error", err)
			}
			if n := creates.Load(); n != 1 {
				t.Errorf("the rejected create was sent %d times, want once", n)
			}
			if msg := err.Error(); strings.Contains(msg, "try again") || strings.Contains(msg, "temporar") || !strings.Contains(msg, "_KEY") {
				t.Errorf("message %q should name the key setting and not suggest retrying", msg)
			}
		})
		t.Run(d.name+"/nothing listens", func(t *testing.T) {
			b := openHosted(t, d.name, d.env("http://"+closedAddr(t)))
			start := time.Now()
			_, err := b.Create(t.Context(), providers.CreateOptions{})
			took := time.Since(start)
			if !errors.Is(err, providers.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach") {
				t.Fatalf("create against a closed port: %v; want an unreachable provider", err)
			}
			if took > 2*time.Second {
				t.Errorf("create against a closed port took %v; an unreachable API must fail at once", took)
			}
		})
	}
}

// TestHostedOverloadIsRetried: a 503 is retried with backoff, and the
// final error says it may pass.
func TestHostedOverloadIsRetried(t *testing.T) {
	for _, d := range hosted {
		t.Run(d.name, func(t *testing.T) {
			var creates atomic.Int32
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if r.Method == http.MethodGet {
					io.WriteString(w, d.emptyList)
					return
				}
				creates.Add(1)
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"message":"overloaded"}`)
			}))
			t.Cleanup(api.Close)
			b := openHosted(t, d.name, d.env(api.URL))
			_, err := b.Create(t.Context(), providers.CreateOptions{})
			if !errors.Is(err, providers.ErrUnavailable) {
				t.Fatalf("create against an overloaded API: %v; want an error that may pass", err)
			}
			if n := creates.Load(); n < 3 {
				t.Errorf("the create was sent %d times; a 503 is worth retrying", n)
			}
			if msg := err.Error(); !strings.Contains(msg, "retr") {
				t.Errorf("message %q should say the call was retried", msg)
			}
		})
	}
}
