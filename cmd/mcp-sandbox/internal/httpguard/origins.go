package httpguard

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Origins is the set of extra browser origins allowed to call the server,
// normalised as scheme://host:port. Local origins are always allowed.
type Origins map[string]struct{}

// ParseOrigins reads a comma-separated list such as
// "https://app.example.com, http://10.0.0.5:8080". Each entry must be
// scheme://host[:port] with no path; the default port of the scheme may be
// left out.
func ParseOrigins(list string) (Origins, error) {
	origins := Origins{}
	for _, entry := range strings.Split(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		key, ok := originKey(entry)
		if !ok {
			return nil, fmt.Errorf("allowed origin %q is not of the form scheme://host[:port] (for example https://app.example.com)", entry)
		}
		origins[key] = struct{}{}
	}
	return origins, nil
}

// Allows reports whether a request with this Origin header may proceed:
// localhost, 127.0.0.1 and [::1] on any port over http or https, or one of
// the configured origins. "null" and malformed origins are refused.
func (o Origins) Allows(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if (u.Scheme == "http" || u.Scheme == "https") && isLoopbackName(u.Hostname()) {
		return true
	}
	key, ok := originKey(origin)
	if !ok {
		return false
	}
	_, found := o[key]
	return found
}

func isLoopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
}

// originKey normalises an origin: lower-case scheme and host, explicit port.
func originKey(origin string) (string, bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		default:
			return "", false
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), true
}
