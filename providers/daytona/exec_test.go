package daytona

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/providers"
)

// TestSpareSessions: each command runs in the session made ahead of time
// for it, once, and a new one is made for the next; a spare session that
// went away (a daemon restart) costs nothing but a new session: the
// command still runs exactly once.
func TestSpareSessions(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	sb := create(t, p, providers.CreateOptions{})
	c := p.cached(sb.ID)
	spare := func() string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c.mu.Lock()
			s := c.spare
			c.mu.Unlock()
			if s != "" {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatal("no session was made for the next command")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, tc := range []struct {
		name string
		gone bool
	}{
		{"ready", false},
		{"gone", true},
		{"ready after one was gone", false},
	} {
		before := spare()
		if tc.gone {
			if err := p.do(ctxT(t), http.MethodDelete, c.base+"/process/session/"+before, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		var out bytes.Buffer
		res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: "echo run >>runs; cat runs | wc -l", Stdout: &out})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %+v %v", tc.name, res, err)
		}
		if got, want := string(bytes.TrimSpace(out.Bytes())), string(rune('1'+i)); got != want {
			t.Errorf("%s: %s commands ran in all, want %s", tc.name, got, want)
		}
		if after := spare(); after == before {
			t.Errorf("%s: the next command would reuse session %s", tc.name, before)
		}
	}
}

// TestHelperUploadOutlivesTheCreateCall: a new sandbox's helper goes up
// after Create returns, and a caller whose context ends with the call does
// not cut it off: the first command waits for it and runs through it.
func TestHelperUploadOutlivesTheCreateCall(t *testing.T) {
	_, url := startFake(t)
	p := newDriver(t, fakeOptions(url))
	ctx, cancel := context.WithCancel(context.Background())
	sb, err := p.Create(ctx, providers.CreateOptions{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Destroy(context.Background(), sb.ID) })
	var out bytes.Buffer
	res, err := p.Exec(ctxT(t), sb.ID, providers.ExecRequest{Command: `printf 'a\000b'`, Stdout: &out})
	if err != nil || res.ExitCode != 0 || out.String() != "a\x00b" {
		t.Fatalf("got %+v, stdout %q, %v", res, out.String(), err)
	}
	if state := p.cached(sb.ID).helper.Load(); state != helperReady {
		t.Errorf("helper state %d: commands went to the shell wrapper", state)
	}
}
