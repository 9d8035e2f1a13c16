package tools

import (
	"strconv"
	"time"
)

// sizeText writes a byte count for people: "1 byte", "512 bytes", "64 KiB",
// "32 MiB", "1.5 GiB". A model reads "33554432 bytes" no better than a
// person. A count a unit cannot state exactly stays in bytes, so that
// "32 MiB + 1 byte" never reads as the 32 MiB limit it is over.
func sizeText(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	v, u := float64(n), -1
	for v >= 1024 && u < len(units)-1 && float64(int64(v/1024*10))/10 == v/1024 {
		v, u = v/1024, u+1
	}
	if u < 0 {
		return strconv.FormatInt(n, 10) + " bytes"
	}
	return trimFloat(v) + " " + units[u]
}

// durationText writes a duration for people: "2 minutes", "45 seconds",
// "1 hour", "1.5 seconds", "250 ms" (time.Duration prints "2m0s").
func durationText(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return plural(d.Seconds(), "second")
	case d < time.Hour:
		return plural(d.Minutes(), "minute")
	}
	return plural(d.Hours(), "hour")
}

func plural(v float64, unit string) string {
	s := trimFloat(v)
	if s != "1" {
		unit += "s"
	}
	return s + " " + unit
}

// trimFloat keeps at most one decimal, and none when it is zero.
func trimFloat(v float64) string {
	return strconv.FormatFloat(float64(int64(v*10+0.5))/10, 'f', -1, 64)
}
