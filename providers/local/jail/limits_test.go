package jail

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLimitsBoundASandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("fork and memory bombs are stress tests")
	}
	bystander := startJail(t, Options{})
	j := startJail(t, Options{Limits: Limits{Processes: 64, Memory: 128 << 20, CPU: 1}})
	rep := j.Isolation().Limits
	t.Logf("limits: %s", rep)
	for _, want := range []string{"processes 64", "memory 134217728"} {
		if !strings.Contains(rep, want) {
			t.Errorf("limits report %q lacks %q", rep, want)
		}
	}

	t.Run("within the limits", func(t *testing.T) {
		if code, out, e := sh(t, j, `perl -e '$x = "a" x (16*1024*1024); print length $x'`); code != 0 || out != "16777216" {
			t.Errorf("16 MiB under a 128 MiB limit: exit %d %q %s", code, out, e)
		}
	})
	t.Run("processes", func(t *testing.T) {
		// Raising its own soft limit first does not lift the sandbox's.
		_, out, _ := sh(t, j, `ulimit -p unlimited 2>/dev/null; perl -e 'my $n = 0; for (1..150) { my $p = fork; last unless defined $p; if (!$p) { sleep 5; exit } $n++ } print $n'`)
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil || n >= 64 || n < 10 {
			t.Errorf("%q processes forked at once under a limit of 64", out)
		}
	})
	t.Run("fork bomb", func(t *testing.T) {
		start := time.Now()
		code, err := j.Run(context.Background(), Cmd{Command: `b(){ b | b & }; b; sleep 30`, Timeout: 3 * time.Second})
		t.Logf("fork bomb: exit %d, %v after %v", code, err, time.Since(start))
		if code == 0 {
			t.Error("the fork bomb exited 0")
		}
		// The host and the other sandbox keep working.
		if err := exec.Command("true").Run(); err != nil {
			t.Errorf("the host cannot fork after the bomb: %v", err)
		}
		if code, out, e := sh(t, bystander, "echo ok"); code != 0 || out != "ok\n" {
			t.Errorf("another sandbox after the bomb: %d %q %s (%+v, %+v)", code, out, e, bystander.cfg, j.cfg)
		}
	})
	t.Run("memory bomb", func(t *testing.T) {
		code, out, _ := sh(t, j, `perl -e '$x = "a" x (512*1024*1024); print length $x'`)
		if code == 0 || out == "536870912" {
			t.Errorf("512 MiB allocated under a 128 MiB limit: exit %d %q", code, out)
		}
		if code, out, _ := sh(t, bystander, "echo ok"); code != 0 || out != "ok\n" {
			t.Errorf("another sandbox after the memory bomb: %d %q", code, out)
		}
	})
	t.Run("the sandbox recovers", func(t *testing.T) {
		// What the bombs left is killed or dying: the sandbox serves again.
		deadline := time.Now().Add(20 * time.Second)
		for {
			// Until the bombs' processes are gone, starting one may fail.
			var out strings.Builder
			code, err := j.Run(context.Background(), Cmd{Command: "echo ok", Stdout: &out})
			if err == nil && code == 0 && out.String() == "ok\n" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sandbox still cannot run a command 20 s after the bombs: %d %q %v", code, out.String(), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// A sandbox at its process limit: a command sent while its processes are
// being reaped waits for room and runs; one sent while they live on says
// which limit is full and what to do, after a short wait, not at once.
func TestStartAtTheProcessLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a sandbox's process limit")
	}
	j := startJail(t, Options{Limits: Limits{Processes: 64}})
	// An rlimit (a server without cgroups) bounds only each command's own
	// forks: a new command always starts there.
	if !strings.Contains(j.Isolation().Limits, "processes 64 (cgroup") {
		t.Skipf("no cgroup bounds the sandbox's processes here: %s", j.Isolation().Limits)
	}
	// It forks until it cannot, and goes on trying: the sandbox stays full.
	fill, err := j.Start(Cmd{Command: `perl -e 'while (1) { my $p = fork; if (!defined $p) { sleep 1; next } if (!$p) { sleep 60; exit } }'`})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	start := time.Now()
	_, err = j.Run(context.Background(), Cmd{Command: "echo no room"})
	if err == nil || !strings.Contains(err.Error(), "process limit") {
		t.Fatalf("a command in a full sandbox: %v, want an error naming the process limit", err)
	}
	if waited := time.Since(start); waited < fullWait {
		t.Errorf("refused after %v, before the %v a reap may take", waited, fullWait)
	}

	// Killed, the filler's processes leave as they are reaped: a command
	// sent at once runs.
	if err := fill.Kill(); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := sh(t, j, "echo room"); code != 0 || out != "room\n" {
		t.Errorf("a command right after the kill: exit %d %q", code, out)
	}
}
