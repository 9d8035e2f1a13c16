package providertest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// testAtomicWrites cuts writes off while the driver is moving the content
// (the caller gives up, as when a client drops the request or the server
// stops) and checks what a user would find: the old file or the whole new
// one, never a prefix, and no temp file left beside it.
func (h *harness) testAtomicWrites(t *testing.T) {
	sb := h.sandbox(t, providers.CreateOptions{Name: "atomic"})
	id := sb.ID
	old := []byte("the old content\n")
	fresh := randBytes(8 << 20)

	// From before the call starts to well after most drivers finish: some
	// cut the stream half way, whatever the driver's speed.
	delays := []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond,
		50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond}
	var targets []string
	for i, delay := range delays {
		target := fmt.Sprintf("atomic/f%d.bin", i)
		targets = append(targets, fmt.Sprintf("f%d.bin", i))
		if err := h.p.WriteFile(testCtx(t), id, target, old, 0); err != nil {
			t.Fatalf("WriteFile(%q): %v", target, err)
		}
		ctx, cancel := context.WithCancel(testCtx(t))
		if delay == 0 {
			cancel()
		} else {
			time.AfterFunc(delay, cancel)
		}
		werr := h.p.WriteFile(ctx, id, target, fresh, 0)
		cancel()
		got, _ := h.read(t, id, target)
		switch {
		case bytes.Equal(got, fresh):
		case werr == nil:
			t.Errorf("cut after %v: WriteFile succeeded but the file holds %d bytes, not the %d written", delay, len(got), len(fresh))
		case !bytes.Equal(got, old):
			t.Errorf("cut after %v (%v): the file holds %d bytes, neither the old %d nor the new %d", delay, werr, len(got), len(old), len(fresh))
		}
	}

	// A write cut off may still be ending inside the sandbox when the call
	// returns: give its clean-up a moment, then nothing but the targets may
	// be there. The contents are checked again, as a late finish must still
	// be the whole file.
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _, err := h.p.ListFiles(testCtx(t), id, "atomic", 1, 0)
		if err != nil {
			t.Fatalf("ListFiles(atomic): %v", err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Path)
		}
		if fmt.Sprint(names) == fmt.Sprint(targets) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after cut writes the directory holds %q, want only %q (no temp files)", names, targets)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range targets {
		got, _ := h.read(t, id, "atomic/"+name)
		if !bytes.Equal(got, fresh) && !bytes.Equal(got, old) {
			t.Errorf("%s holds %d bytes after the cut writes settled, neither the old %d nor the new %d", name, len(got), len(old), len(fresh))
		}
	}
}
