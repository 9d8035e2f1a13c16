package jail

import (
	"context"
	"os/exec"
	"testing"
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

func BenchmarkStart(b *testing.B) {
	dir, sock := b.TempDir(), shortTempDir(b)
	ctx := context.Background()
	for range b.N {
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
}
