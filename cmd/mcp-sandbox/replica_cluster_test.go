package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-sandbox/mcp-sandbox/session/redistest"
)

// The whole picture, with real parts: three server binaries sharing one
// redis-server (append-only file on) and one state dir, behind nginx with
// round-robin upstreams and no stickiness, driven by the official
// TypeScript SDK client. Its calls land on every replica; one replica is
// SIGKILLed mid-session and the next calls go on with the same sandbox,
// files and background process; Redis is killed and restarted, calls fail
// with a clear error meanwhile and then work; a DELETE through nginx ends
// the session, its sandbox destroyed once, none left.
func TestReplicasBehindNginx(t *testing.T) {
	n := needNode(t)
	nginx := needNginx(t)
	r := redistest.StartPersistent(t)
	state := t.TempDir()

	var replicas []*replica
	for range 3 {
		replicas = append(replicas, startReplica(t, state, "--http", "127.0.0.1:0", "--auth", "none", "--session-store", r.URL))
	}
	lb := startNginx(t, nginx, replicas)
	d := startDriver(t, n, lb.url+"/mcp")

	res := d.ok(t, "run_command", map[string]any{"command": "echo one > notes.txt"})
	box := res["sandbox_id"]
	proc := d.ok(t, "process_start", map[string]any{"command": "echo started; sleep 3; echo later; sleep 1000"})["process_id"]
	for i := range 6 {
		if res := d.ok(t, "run_command", map[string]any{"command": "cat notes.txt"}); res["sandbox_id"] != box || res["stdout"] != "one\n" {
			t.Fatalf("call %d: %v, want sandbox %v printing one", i, res, box)
		}
	}
	if got := lb.upstreams(t, d.session); len(got) != 3 {
		t.Fatalf("the session's requests reached %v, want all three replicas", got)
	}

	replicas[1].cmd.Process.Kill() // SIGKILL, mid-session
	replicas[1].cmd.Wait()
	d.ok(t, "write_file", map[string]any{"path": "after-kill.txt", "content": "two\n"})
	for i := range 6 {
		res := d.ok(t, "run_command", map[string]any{"command": "cat notes.txt after-kill.txt"})
		if res["sandbox_id"] != box || res["stdout"] != "one\ntwo\n" {
			t.Fatalf("call %d after the kill: %v, want sandbox %v with both files", i, res, box)
		}
	}
	out := d.ok(t, "process_output", map[string]any{"process_id": proc, "wait_seconds": 10})
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(fmt.Sprint(out["data"]), "later") && time.Now().Before(deadline); {
		out = d.ok(t, "process_output", map[string]any{"process_id": proc, "wait_seconds": 5})
	}
	if data := fmt.Sprint(out["data"]); data != "started\nlater\n" {
		t.Errorf("the background process after the kill printed %q, want started and later", data)
	}

	r.Stop()
	if a := d.call(t, "run_command", map[string]any{"command": "true"}); a.OK || !strings.Contains(a.Error, "the session store does not answer") {
		t.Errorf("a call with Redis down: %+v, want an error naming the session store", a)
	}
	if code, body := getStatus(t, replicas[0].base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "session store:") {
		t.Errorf("/healthz with Redis down: %d %q", code, body)
	}
	r.Start(t)
	if res := d.ok(t, "run_command", map[string]any{"command": "cat notes.txt"}); res["sandbox_id"] != box {
		t.Errorf("after Redis came back: %v, want sandbox %v", res, box)
	}
	if code, _ := getStatus(t, replicas[0].base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with Redis back: %d", code)
	}

	if a := d.send(t, map[string]any{"op": "terminate"}); !a.OK {
		t.Fatalf("DELETE through nginx: %+v", a)
	}
	waitFor(t, "the sandbox removed after DELETE", func() bool { return len(sandboxDirs(t, state)) == 0 })
	destroyed := func() (n int) {
		for _, rep := range replicas {
			n += strings.Count(rep.logs.String(), "session ended; sandbox destroyed")
		}
		return n
	}
	waitFor(t, "the destroy logged", func() bool { return destroyed() > 0 })
	time.Sleep(time.Second) // room for a second destroy, were there one
	if destroyed := destroyed(); destroyed != 1 {
		t.Errorf("the sandbox was destroyed %d times across the replicas, want once", destroyed)
	}
	if a := d.call(t, "run_command", map[string]any{"command": "true"}); a.OK && !a.IsError {
		t.Errorf("a call after DELETE succeeded: %+v", a)
	}
}

func needNginx(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed (apt-get install -y nginx)")
	}
	t.Skip("nginx is not installed")
	return ""
}

type replica struct {
	cmd  *exec.Cmd
	base string // http://host:port
	logs *syncBuffer
}

// startReplica runs the server binary on the shared state dir and keeps
// its log.
func startReplica(t *testing.T, state string, args ...string) *replica {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--log-format", "json")...)
	cmd.Env = []string{"MCP_SANDBOX_STATE_DIR=" + state, "HOME=" + t.TempDir(), "PATH=/usr/bin:/bin", "MCP_SANDBOX_ENV_FILE=" + os.DevNull}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rep := &replica{cmd: cmd, logs: &syncBuffer{}}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGINT)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			t.Logf("replica %s log:\n%s", rep.base, rep.logs)
		}
	})
	sc := bufio.NewScanner(stderr)
	for rep.base == "" && sc.Scan() {
		rep.logs.Write(append(sc.Bytes(), '\n'))
		var line struct{ URL string }
		json.Unmarshal(sc.Bytes(), &line)
		rep.base = strings.TrimSuffix(line.URL, "/mcp")
	}
	go io.Copy(rep.logs, stderr)
	if rep.base == "" {
		t.Fatalf("the replica logged no URL:\n%s", rep.logs)
	}
	return rep
}

type balancer struct {
	url string
	log string // access log: upstream, method, session
}

// nginxConfig is the README's configuration (see "Running several
// replicas") with this test's ports and paths.
func nginxConfig(dir, listen string, upstreams []string) string {
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=5s;\n", u)
	}
	return fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  log_format upstreams '$upstream_addr $request_method $http_mcp_session_id $status';
  access_log %[1]s/access.log upstreams;

  upstream mcp_sandbox {
%[3]s  }
  server {
    listen %[2]s;
    location / {
      proxy_pass http://mcp_sandbox;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;   # what the client asked for, as the server checks it
      proxy_buffering off;           # SSE: progress reaches the client as it happens
      proxy_read_timeout 1h;         # GET streams and long calls
      client_max_body_size 64m;      # at least --max-body-bytes
      proxy_next_upstream error timeout;
    }
  }
}
`, dir, listen, servers.String())
}

func startNginx(t *testing.T, nginx string, replicas []*replica) *balancer {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // nginx's workers may run as another user
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	var ups []string
	for _, r := range replicas {
		ups = append(ups, strings.TrimPrefix(r.base, "http://"))
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(dir, listen, ups)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lb := &balancer{url: "http://" + listen, log: filepath.Join(dir, "access.log")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", listen); err == nil {
			c.Close()
			return lb
		}
		if time.Now().After(deadline) {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not listen on %s: %s\n%s", listen, out, errLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// upstreams lists the replicas that answered requests of a session.
func (b *balancer) upstreams(t *testing.T, session string) map[string]int {
	t.Helper()
	raw, err := os.ReadFile(b.log)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[2] == session && f[3] == "200" {
			got[f[0]]++
		}
	}
	return got
}

// driver is testdata/js/replica-driver.mjs running.
type driver struct {
	in      io.WriteCloser
	out     *bufio.Scanner
	session string
}

type answer struct {
	OK         bool           `json:"ok"`
	IsError    bool           `json:"isError"`
	Structured map[string]any `json:"structured"`
	Text       string         `json:"text"`
	Error      string         `json:"error"`
	Session    string         `json:"session"`
}

func startDriver(t *testing.T, n nodeTools, url string) *driver {
	t.Helper()
	script, _ := filepath.Abs("testdata/js/replica-driver.mjs")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, n.node, script, url)
	cmd.Env = append(os.Environ(), "MCP_SANDBOX_JS_MODULES="+n.modules)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
		cancel()
		if t.Failed() {
			t.Logf("driver stderr:\n%s", stderr)
		}
	})
	d := &driver{in: in, out: bufio.NewScanner(outPipe)}
	d.out.Buffer(nil, 16<<20)
	if !d.out.Scan() {
		t.Fatalf("the driver did not connect: %s", stderr)
	}
	var a answer
	if err := json.Unmarshal(d.out.Bytes(), &a); err != nil || a.Session == "" {
		t.Fatalf("driver: %q %v", d.out.Text(), err)
	}
	d.session = a.Session
	return d
}

func (d *driver) send(t *testing.T, cmd map[string]any) answer {
	t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := d.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	if !d.out.Scan() {
		t.Fatalf("the driver exited after %s", b)
	}
	var a answer
	if err := json.Unmarshal(d.out.Bytes(), &a); err != nil {
		t.Fatalf("driver answered %q: %v", d.out.Text(), err)
	}
	return a
}

func (d *driver) call(t *testing.T, tool string, args map[string]any) answer {
	t.Helper()
	return d.send(t, map[string]any{"op": "call", "tool": tool, "args": args})
}

// ok calls a tool that must succeed and returns its structured result.
func (d *driver) ok(t *testing.T, tool string, args map[string]any) map[string]any {
	t.Helper()
	a := d.call(t, tool, args)
	if !a.OK || a.IsError {
		t.Fatalf("%s %v: %+v", tool, args, a)
	}
	return a.Structured
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
