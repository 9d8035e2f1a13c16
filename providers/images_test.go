package providers

import "testing"

func TestImagePolicy(t *testing.T) {
	ip := NewImagePolicy("python:3.12-slim", " node:*, ghcr.io/acme/* ,")
	for _, tc := range []struct {
		names []string
		want  bool
	}{
		{[]string{"python:3.12-slim"}, true},
		{[]string{"node:22"}, true},
		{[]string{"ghcr.io/acme/tools:1"}, true},
		{[]string{"ghcr.io/other/tools:1"}, false},
		{[]string{"127.0.0.1:5000/x"}, false},
		{[]string{"python:3.13"}, false},
		{[]string{"x", "node:20"}, true}, // any of its names
		{[]string{"nodejs:22"}, false},
	} {
		if got := ip.Allowed(tc.names...); got != tc.want {
			t.Errorf("Allowed(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
	if NewImagePolicy("base", "").Allowed("other") {
		t.Error("an empty list allows only the default")
	}
	if !NewImagePolicy("base", "*").Allowed("anything/at:all") {
		t.Error("* allows everything")
	}
}
