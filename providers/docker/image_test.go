package docker_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
	"github.com/mcp-sandbox/mcp-sandbox/providers/docker"
)

// listener counts the connections a pull makes to a registry address on the
// host's loopback.
func listener(t *testing.T) (string, *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

// An agent cannot make the engine connect to an address it names: only the
// operator's images are pulled.
func TestImagePullsAreTheOperatorsPolicy(t *testing.T) {
	addr, conns := listener(t)
	p := open(t, settings())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := p.Create(ctx, providers.CreateOptions{Image: addr + "/probe:latest"})
	if !errors.Is(err, providers.ErrInvalidArgument) || !strings.Contains(err.Error(), docker.EnvAllowed) {
		t.Fatalf("want a refusal naming %s, got %v", docker.EnvAllowed, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := conns.Load(); n != 0 {
		t.Fatalf("the refused image still reached the address %d times", n)
	}

	// An image already on the engine needs no pull and is always allowed.
	sb, err := p.Create(ctx, providers.CreateOptions{Image: testImage()})
	if err != nil {
		t.Fatalf("an image on the engine: %v", err)
	}
	p.Destroy(ctx, sb.ID)

	// The operator can allow more; then the pull is attempted (and fails
	// here, since nothing speaks the registry protocol at the address).
	p = open(t, settings(docker.EnvAllowed, "127.0.0.1:*"))
	_, err = p.Create(ctx, providers.CreateOptions{Image: addr + "/probe:latest"})
	if err == nil || errors.Is(err, providers.ErrInvalidArgument) && strings.Contains(err.Error(), docker.EnvAllowed) {
		t.Fatalf("an allowed image must be pulled, got %v", err)
	}
	if conns.Load() == 0 {
		t.Fatal("the allowed pull never reached the registry address")
	}
}
