package providers

import (
	"regexp"
	"strings"
)

// ImagePolicy says which images (or templates) an agent may ask for: an
// operator's choice, never the agent's. The configured default is always
// allowed; anything else must match one of the patterns, where * matches
// any run of characters (python:*, ghcr.io/acme/*, *).
type ImagePolicy struct {
	Default  string
	patterns []*regexp.Regexp
	raw      string
}

// NewImagePolicy parses a comma-separated pattern list.
func NewImagePolicy(defaultImage, patterns string) ImagePolicy {
	ip := ImagePolicy{Default: defaultImage, raw: strings.TrimSpace(patterns)}
	for _, p := range strings.Split(patterns, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ip.patterns = append(ip.patterns, regexp.MustCompile("^"+strings.ReplaceAll(regexp.QuoteMeta(p), `\*`, ".*")+"$"))
		}
	}
	return ip
}

// Allowed reports whether any of the names an image goes by (as written,
// and normalised forms such as docker.io/library/python:3.12) is the
// default or matches a pattern.
func (ip ImagePolicy) Allowed(names ...string) bool {
	for _, n := range names {
		if n == "" {
			continue
		}
		if n == ip.Default {
			return true
		}
		for _, re := range ip.patterns {
			if re.MatchString(n) {
				return true
			}
		}
	}
	return false
}

// Patterns is the list as configured, for messages.
func (ip ImagePolicy) Patterns() string { return ip.raw }
