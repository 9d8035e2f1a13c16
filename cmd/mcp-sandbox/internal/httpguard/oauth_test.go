package httpguard

import (
	"net/http"
	"strings"
	"testing"
)

// A 401 must not send a client such as the MCP inspector into an OAuth
// flow: no metadata is advertised, at any of the places clients look, and
// the challenge names no resource metadata.
func TestNoOAuthMetadataIsAdvertised(t *testing.T) {
	ts := startServer(t, Config{Token: testToken})
	resp := ts.do(t, request{body: initializeBody})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %s, want 401", resp.Status)
	}
	if c := resp.Header.Get("WWW-Authenticate"); strings.Contains(c, "resource_metadata") || !strings.HasPrefix(c, "Bearer ") {
		t.Errorf("WWW-Authenticate = %q: want a plain Bearer challenge", c)
	}
	for _, path := range []string{
		"/.well-known/oauth-protected-resource",
		"/.well-known/oauth-protected-resource/mcp",
		"/.well-known/oauth-authorization-server",
		"/.well-known/oauth-authorization-server/mcp",
		"/.well-known/openid-configuration",
	} {
		for _, auth := range []string{"", "Bearer " + testToken} {
			headers := map[string]string{}
			if auth != "" {
				headers["Authorization"] = auth
			}
			resp := ts.do(t, request{method: http.MethodGet, path: path, headers: headers})
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s (authorization %t): %s, want 404", path, auth != "", resp.Status)
			}
		}
	}
}
