package jail

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
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
	// Four commands at once: one gets the spare reaper, the others start
	// their own (as every command did before there was a spare); an op is
	// the whole burst.
	b.Run("jail-burst4", func(b *testing.B) {
		j := startJail(b, Options{})
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			errs := make(chan error, 4)
			for range 4 {
				go func() {
					code, err := j.Run(ctx, Cmd{Command: "true"})
					if err == nil && code != 0 {
						err = fmt.Errorf("exit %d", code)
					}
					errs <- err
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
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
			var took []time.Duration
			for range b.N {
				b.StopTimer()
				waitSpare(false)
				if !warm {
					dropSpare(false)
				}
				b.StartTimer()
				t0 := time.Now()
				j, _, err := Start(ctx, Options{Dir: dir, SocketDir: sock})
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
				b.StopTimer()
				if err := j.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			// On a loaded machine a few starts that wait for a core make
			// the mean; the median is what a start takes.
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/1e6, "median-ms")
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
			refillSpare(LevelNamespaces, network)
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
