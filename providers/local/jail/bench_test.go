package jail

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// go test -run '^$' -bench . ./providers/local/jail
func BenchmarkRunTrue(b *testing.B) {
	b.Run("jail", func(b *testing.B) {
		j := startJail(b, Options{})
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			if code, err := j.Run(ctx, Cmd{Command: "true"}); code != 0 || err != nil {
				b.Fatal(code, err)
			}
		}
	})
	b.Run("exec", func(b *testing.B) {
		for range b.N {
			if err := exec.Command("sh", "-c", "true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bwrap", func(b *testing.B) {
		if _, err := exec.LookPath("bwrap"); err != nil {
			b.Skip("bubblewrap is not installed (apt-get install bubblewrap): no baseline")
		}
		for range b.N {
			if out, err := exec.Command("bwrap", "--unshare-all", "--ro-bind", "/", "/", "sh", "-c", "true").CombinedOutput(); err != nil {
				b.Fatal(err, string(out))
			}
		}
	})
}

// BenchmarkStart measures Start with a spare PID 1 ready (warm, the usual
// case: sandboxes are created one at a time) and without (cold: the server
// binary starts inside Start).
func BenchmarkStart(b *testing.B) {
	if !userNamespacesWork() {
		b.Skip("this machine forbids user namespaces")
	}
	for _, warm := range []bool{true, false} {
		name := map[bool]string{true: "warm", false: "cold"}[warm]
		b.Run(name, func(b *testing.B) {
			dir, sock := b.TempDir(), shortTempDir(b)
			ctx := context.Background()
			for range b.N {
				b.StopTimer()
				waitSpare(false)
				if !warm {
					dropSpare(false)
				}
				b.StartTimer()
				j, _, err := Start(ctx, Options{Dir: dir, SocketDir: sock})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := j.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// waitSpare waits until a spare PID 1 is ready, starting one if needed.
func waitSpare(network bool) {
	for {
		spares.Lock()
		l, filling := spares.byNetwork[network], spares.filling[network]
		spares.Unlock()
		if l != nil {
			return
		}
		if !filling {
			if l, err := takeOrLaunch(LevelNamespaces, network); err == nil {
				l.kill()
			}
		}
		time.Sleep(time.Millisecond)
	}
}

func dropSpare(network bool) {
	spares.Lock()
	l := spares.byNetwork[network]
	delete(spares.byNetwork, network)
	spares.Unlock()
	if l != nil {
		l.kill()
	}
}
