// Package providertest is the behavioural suite every sandbox driver must
// pass, in the spirit of gocloud.dev's drivertest: a driver's own test calls
// Run with a constructor, and the suite drives it only through the portable
// providers.Backend, as the server does, checking what a user of the driver
// would notice. A driver with background processes gets their checks too.
//
// The suite assumes a POSIX sandbox with the usual small tools (sh, cat,
// echo, printf, sleep, head, ln, mkdir, grep, pwd, env, kill, wc): busybox is
// enough. It decides what to check from the driver's Capabilities: a
// capability the driver declares must work, and one it lacks must fail
// cleanly (ErrUnsupported) or degrade as documented, never oddly.
package providertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// NewProvider returns a driver for the suite. Every call must return a
// driver over the same backend (the same state dir, engine or account), so
// the suite can check that a fresh driver serves a sandbox another one
// created. The constructor registers its own cleanup with t.Cleanup.
type NewProvider func(t *testing.T) providers.Provider

// Run runs the whole suite against the driver newProvider returns.
func Run(t *testing.T, newProvider NewProvider) {
	t.Helper()
	d := newProvider(t)
	h := &harness{p: providers.NewBackend(d), newProvider: newProvider}
	// A variable only the test process has: it must never appear inside a
	// sandbox (drivers never pass the server's environment in).
	h.secretName = "PROVIDERTEST_SECRET_" + strings.ToUpper(randHex(4))
	h.secretValue = "s3cret-" + randHex(8)
	os.Setenv(h.secretName, h.secretValue)
	t.Cleanup(func() { os.Unsetenv(h.secretName) })

	t.Run("Lifecycle", h.testLifecycle)
	t.Run("Exec", h.testExec)
	t.Run("Files", h.testFiles)
	t.Run("AtomicWrites", h.testAtomicWrites)
	t.Run("Capabilities", h.testCapabilities)
	if _, ok := d.(providers.Processes); ok {
		t.Run("Processes", func(t *testing.T) { RunProcesses(t, newProvider) })
	}
}

type harness struct {
	p           *providers.Backend
	newProvider NewProvider
	secretName  string
	secretValue string
}

// ctx bounds every call the suite makes, so a hung driver fails the test
// instead of stalling the run.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// sandbox creates a sandbox that is destroyed when t ends.
func (h *harness) sandbox(t *testing.T, opts providers.CreateOptions) providers.Sandbox {
	t.Helper()
	sb, err := h.p.Create(testCtx(t), opts)
	if err != nil {
		t.Fatalf("Create(%+v): %v", opts, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := h.p.Destroy(ctx, sb.ID); err != nil && !errors.Is(err, providers.ErrNotFound) {
			t.Errorf("cleanup: Destroy(%s): %v", sb.ID, err)
		}
	})
	return sb
}

// run executes cmd and fails the test on a driver error (not on a non-zero
// exit status).
func (h *harness) run(t *testing.T, id string, req providers.ExecRequest) (providers.ExecResult, string, string) {
	t.Helper()
	var out, errb LockedBuffer
	req.Stdout, req.Stderr = &out, &errb
	res, err := h.p.Exec(testCtx(t), id, req)
	if err != nil {
		t.Fatalf("Exec(%q): %v", req.Command, err)
	}
	return res, out.String(), errb.String()
}

// sh runs cmd and requires exit status 0; it returns stdout.
func (h *harness) sh(t *testing.T, id, cmd string) string {
	t.Helper()
	res, out, errOut := h.run(t, id, providers.ExecRequest{Command: cmd})
	if res.ExitCode != 0 {
		t.Fatalf("Exec(%q): exit %d, stderr %q", cmd, res.ExitCode, errOut)
	}
	return out
}

// wantKind fails unless err is of the given kind and its message names what
// it is about (a path, an ID), so a user can tell what to fix.
func wantKind(t *testing.T, what string, err, kind error, mentions string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: want an error of kind %q, got %v", what, kind, err)
		return
	}
	if mentions != "" && !strings.Contains(err.Error(), mentions) {
		t.Errorf("%s: error %q does not name %q", what, err, mentions)
	}
}

// quote makes s a single shell word.

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// LockedBuffer is a bytes.Buffer safe for a driver that writes from another
// goroutine than the one that reads the result.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *LockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// countingWriter counts what it is given and keeps none of it, so a large
// output test measures the driver's memory, not the test's.
type countingWriter struct {
	mu       sync.Mutex
	n        int64
	writes   int
	maxWrite int
	nonZero  bool
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += int64(len(p))
	w.writes++
	w.maxWrite = max(w.maxWrite, len(p))
	if bytes.IndexFunc(p, func(r rune) bool { return r != 0 }) >= 0 {
		w.nonZero = true
	}
	return len(p), nil
}

// firstWriteWriter records when output first arrived.
type firstWriteWriter struct {
	LockedBuffer
	once  sync.Once
	first time.Time
}

func (w *firstWriteWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { w.first = time.Now() })
	return w.LockedBuffer.Write(p)
}

func (w *firstWriteWriter) firstAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

// aliveScript prints "alive" while the process whose PID is in the named
// file runs, "dead" once it is gone or a zombie (killed, waiting to be
// reaped by whatever init the sandbox has).
func aliveScript(pidFile string) string {
	return fmt.Sprintf(`pid=$(cat %s) || exit 2
if [ -d /proc/$pid ] && ! grep -q '^State:[[:space:]]*Z' /proc/$pid/status 2>/dev/null; then echo alive; else echo dead; fi`, providers.ShellQuote(pidFile))
}

// waitDead polls until the process recorded in pidFile is gone.
func (h *harness) waitDead(t *testing.T, id, pidFile string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := strings.TrimSpace(h.sh(t, id, aliveScript(pidFile)))
		if out == "dead" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background child recorded in %s is still %s after the command was stopped", pidFile, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
