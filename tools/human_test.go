package tools

import (
	"testing"
	"time"
)

func TestSizeText(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0 bytes"}, {1, "1 byte"}, {2, "2 bytes"}, {1023, "1023 bytes"},
		{1 << 10, "1 KiB"}, {64 << 10, "64 KiB"}, {1536, "1.5 KiB"},
		{32<<20 + 1, "33554433 bytes"}, {1537, "1537 bytes"}, {32 << 20, "32 MiB"}, {64 << 20, "64 MiB"}, {3 << 30, "3 GiB"},
	} {
		if got := sizeText(tt.n); got != tt.want {
			t.Errorf("sizeText(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{250 * time.Millisecond, "250 ms"}, {time.Second, "1 second"}, {1500 * time.Millisecond, "1.5 seconds"},
		{45 * time.Second, "45 seconds"}, {2 * time.Minute, "2 minutes"}, {90 * time.Second, "1.5 minutes"},
		{time.Hour, "1 hour"}, {3 * time.Hour, "3 hours"},
	} {
		if got := durationText(tt.d); got != tt.want {
			t.Errorf("durationText(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
