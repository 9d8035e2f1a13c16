package tools

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"
)

// The capture must equal "first half + last half" of the stream for any
// way the stream is split into writes.
func TestCaptureMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := 0; iter < 500; iter++ {
		limit := 2 + rng.Intn(64)
		stream := make([]byte, rng.Intn(300))
		for i := range stream {
			stream[i] = byte('a' + rng.Intn(26))
		}
		c := newCapture(limit)
		for rest := stream; len(rest) > 0; {
			n := 1 + rng.Intn(len(rest))
			c.Write(rest[:n])
			rest = rest[n:]
		}
		got := append(append([]byte{}, c.head...), c.tailBytes()...)
		want := stream
		if len(stream) > limit {
			want = append(append([]byte{}, stream[:limit/2]...), stream[len(stream)-(limit-limit/2):]...)
		}
		if !bytes.Equal(got, want) || c.total != int64(len(stream)) {
			t.Fatalf("limit %d, stream %q: got %q want %q", limit, stream, got, want)
		}
	}
}

func TestCaptureCutsAtRuneBoundaries(t *testing.T) {
	c := newCapture(10)
	c.Write([]byte(strings.Repeat("é", 20))) // 40 bytes, 2 each: 5-byte halves cut mid-rune keep 4 each
	s, trunc, lossy := c.text()
	if lossy || strings.ContainsRune(s, '\uFFFD') || trunc == nil || trunc.DroppedBytes != 32 {
		t.Fatalf("got %q %+v lossy=%v", s, trunc, lossy)
	}
}
