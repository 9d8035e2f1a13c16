package supervisor

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperBinary writes the embedded helper for this machine into a fresh
// directory, and returns both.
func helperBinary(t *testing.T) (dir, bin string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the helper runs on Linux")
	}
	_, raw, ok := HelperFile(runtime.GOARCH)
	if !ok {
		t.Fatalf("no helper for %s is built in", runtime.GOARCH)
	}
	dir = t.TempDir()
	bin = filepath.Join(dir, "helper")
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// TestHelperExec runs the embedded helper's exec mode, as drivers whose
// vendor returns output as text do, and checks what they count on.
func TestHelperExec(t *testing.T) {
	dir, bin := helperBinary(t)
	for _, tc := range []struct {
		name           string
		args           []string
		stdin          string
		stdout, stderr string
	}{
		{"esc: split, escaped, exit code", []string{"-enc", "esc", "--", `printf 'a\000\001\\b'; printf 'e\002' >&2; exit 3`},
			"", `\sa\0\1\\b\e3` + "\n", `\se\2\e` + "\n"},
		{"esc: stdin as base64 lines up to a dot", []string{"-enc", "esc", "-stdin", "--", "cat; echo end"},
			"aGk=\n\n\nAP8=\n.\nbm90IHRoaXM=\n", `\shi\0` + "\xff" + "end\n" + `\e0` + "\n", `\s\e` + "\n"},
		{"esc: env and cwd", []string{"-enc", "esc", "-cwd", dir, "--", `printf '%s %s' "$A" "$PWD"`, "A=x y"},
			"", `\sx y ` + dir + `\e0` + "\n", `\s\e` + "\n"},
		{"esc: a missing cwd", []string{"-enc", "esc", "-cwd", dir + "/none", "--", "echo no"},
			"", `\s\cnodir\e1` + "\n", `\s\e` + "\n"},
		{"b64: lines and reports", []string{"-enc", "b64", "--", `printf 'a\000'; echo e >&2; exit 2`},
			"", "!run\nYQA=\n!exit 2\n", "ZQo=\n"},
		{"b64: a cwd that is a file", []string{"-enc", "b64", "-cwd", bin, "--", "echo no"},
			"", "!run\n!notdir\n!exit 1\n", ""},
		{"b64: timeout", []string{"-enc", "b64", "-timeout", "0.2", "--", "echo x; sleep 30"},
			"", "!run\neAo=\n!timeout\n!exit 137\n", ""},
	} {
		cmd := exec.Command(bin, append([]string{"exec"}, tc.args...)...)
		cmd.Stdin = strings.NewReader(tc.stdin)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
			t.Errorf("%s: %v (stderr %q)", tc.name, err, errOut.String())
			continue
		}
		if out.String() != tc.stdout || errOut.String() != tc.stderr {
			t.Errorf("%s:\nstdout %q, want %q\nstderr %q, want %q", tc.name, out.String(), tc.stdout, errOut.String(), tc.stderr)
		}
	}
}

// TestHelperExecKillsDetached: the timeout and a kill signal end what the
// command started however it detached, and a command ending with a
// background child returns without waiting for it.
func TestHelperExecKillsDetached(t *testing.T) {
	dir, bin := helperBinary(t)
	alive := func(pidFile string) bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		for range 200 {
			st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil || strings.Contains(string(st), ") Z ") {
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		return true
	}

	child := filepath.Join(dir, "timeout.pid")
	cmd := exec.Command(bin, "exec", "-timeout", "0.3", "--", "setsid sleep 60 & echo $! >"+child+"; wait")
	if out, _ := cmd.Output(); !strings.Contains(string(out), `\t\e137`) {
		t.Fatalf("timeout: %q", out)
	}
	if alive(child) {
		t.Error("a setsid child outlived the timeout")
	}

	child = filepath.Join(dir, "signal.pid")
	pidFile := filepath.Join(dir, "helper.pid")
	cmd = exec.Command(bin, "exec", "-pid", pidFile, "--", "setsid sleep 60 & echo $! >"+child+"; wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		b, err := os.ReadFile(pidFile)
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			if _, err := os.Stat(child); err == nil {
				syscall.Kill(pid, syscall.SIGUSR2)
				break
			}
		}
		if i > 500 {
			t.Fatal("the helper wrote no pid file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Wait()
	if alive(child) {
		t.Error("a setsid child outlived the kill signal")
	}

	child = filepath.Join(dir, "bg.pid")
	start := time.Now()
	out, err := exec.Command(bin, "exec", "--", "sleep 60 & echo $! >"+child+"; echo started").Output()
	if err != nil || string(out) != `\sstarted`+"\n"+`\e0`+"\n" || time.Since(start) > 5*time.Second {
		t.Fatalf("background child: %q, %v after %v", out, err, time.Since(start))
	}
	if !alive(child) {
		t.Error("the background child did not outlive the command")
	}
}

// TestHelperExecPlainCommands: a command of plain words, started without a
// shell, behaves as it did through one: its PWD, its exit code, sh's
// message and 127 for a program it cannot find, and an executable without
// a #! line run as a script.
func TestHelperExecPlainCommands(t *testing.T) {
	dir, bin := helperBinary(t)
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o755)
	os.WriteFile(filepath.Join(work, "noshebang"), []byte("echo from a script; exit 4\n"), 0o755)
	for _, tc := range []struct {
		command, stdout, stderr string
	}{
		{"printenv PWD", `\s` + work + "\n" + `\e0` + "\n", `\s\e` + "\n"},
		{"false", `\s\e1` + "\n", `\s\e` + "\n"},
		{"ls -d .", `\s.` + "\n" + `\e0` + "\n", `\s\e` + "\n"},
		{"./noshebang", `\sfrom a script` + "\n" + `\e4` + "\n", `\s\e` + "\n"},
		{"no-such-program-here", `\s\e127` + "\n", "not found"},
	} {
		cmd := exec.Command(bin, "exec", "-cwd", work, "--", tc.command)
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		cmd.Run()
		if out.String() != tc.stdout || !strings.Contains(errOut.String(), tc.stderr) {
			t.Errorf("%s:\nstdout %q, want %q\nstderr %q, want %q", tc.command, out.String(), tc.stdout, errOut.String(), tc.stderr)
		}
	}
}
