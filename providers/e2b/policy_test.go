package e2b

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// Templates an agent may name are the operator's choice; a refused one never
// reaches the API.
func TestTemplatesAreTheOperatorsPolicy(t *testing.T) {
	fake, url := startFake(t)
	o := fakeOptions(url)
	p := newDriver(t, o)
	ctx := context.Background()
	_, err := p.Create(ctx, providers.CreateOptions{Image: "costly-gpu"})
	if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), EnvAllowed) {
		t.Fatalf("want a refusal naming %s, got %v", EnvAllowed, err)
	}
	if n := fake.CreateRequests(); n != 0 {
		t.Fatalf("a refused template reached the API (%d creates)", n)
	}
	o.AllowedTemplates = "costly-*"
	p = newDriver(t, o)
	sb, err := p.Create(ctx, providers.CreateOptions{Image: "costly-gpu"})
	if err != nil {
		t.Fatalf("an allowed template: %v", err)
	}
	p.Destroy(ctx, sb.ID)
}
