package httpguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good", testToken+"\n")
	empty := write("empty", "\n")
	short := write("short", "abc\n")

	tests := []struct {
		name    string
		value   string
		file    string
		want    string
		wantErr string
	}{
		{name: "none", want: ""},
		{name: "value", value: testToken, want: testToken},
		{name: "file with trailing newline", file: good, want: testToken},
		{name: "both", value: testToken, file: good, wantErr: "use only one"},
		{name: "empty file", file: empty, wantErr: "is empty"},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: "reading the auth token file"},
		{name: "short value", value: "short", wantErr: "at least 16"},
		{name: "short file", file: short, wantErr: "at least 16"},
		{name: "inner whitespace", value: "0123456789 abcdef0123", wantErr: "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadToken(tt.value, tt.file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), testToken) {
					t.Errorf("error %q leaks the token", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("LoadToken = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCheckBind(t *testing.T) {
	tests := []struct {
		addr    string
		token   string
		wantErr bool
	}{
		{"127.0.0.1:8080", "", false},
		{"127.0.0.1:0", "", false},
		{"localhost:8080", "", false},
		{"[::1]:8080", "", false},
		{"0.0.0.0:8080", "", true},
		{":8080", "", true},
		{"[::]:8080", "", true},
		{"192.0.2.10:8080", "", true},
		{"myhost.example:8080", "", true},
		{"0.0.0.0:8080", testToken, false},
		{":8080", testToken, false},
		{"unix:/run/mcp.sock", "", false}, // guarded by its 0600 mode
	}
	for _, tt := range tests {
		t.Run(tt.addr+"/token="+map[bool]string{true: "set", false: "unset"}[tt.token != ""], func(t *testing.T) {
			err := CheckBind(tt.addr, tt.token)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CheckBind(%q) = %v, wantErr %v", tt.addr, err, tt.wantErr)
			}
			if err != nil {
				for _, want := range []string{"refusing to listen", "without an auth token", "MCP_SANDBOX_AUTH_TOKEN", "127.0.0.1"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("message %q should contain %q", err, want)
					}
				}
			}
		})
	}
	if err := CheckBind("no-port", ""); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("CheckBind(no-port) = %v, want an address error", err)
	}
}

func TestLoadOrCreateTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", TokenFileName)
	first, created, err := LoadOrCreateTokenFile(path)
	if err != nil || !created || len(first) != 64 {
		t.Fatalf("first start: %q created=%v err=%v; want a new 64-hex-digit token", first, created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v, want 0600", fi.Mode(), err)
	}
	again, created, err := LoadOrCreateTokenFile(path)
	if err != nil || created || again != first {
		t.Fatalf("restart: %q created=%v err=%v; want the same token", again, created, err)
	}
	other, _, _ := LoadOrCreateTokenFile(filepath.Join(t.TempDir(), TokenFileName))
	if other == first {
		t.Fatal("two state dirs got the same token")
	}

	tests := []struct {
		name    string
		setup   func(path string)
		wantErr string
	}{
		{"readable by others", func(p string) { os.WriteFile(p, []byte(testToken), 0o644) }, "only this user"},
		{"a directory", func(p string) { os.Mkdir(p, 0o700) }, "not a regular file"},
		{"a symlink", func(p string) { os.Symlink("/etc/hostname", p) }, "not a regular file"},
		{"too short", func(p string) { os.WriteFile(p, []byte("abc"), 0o600) }, "remove the file and restart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), TokenFileName)
			tt.setup(p)
			_, _, err := LoadOrCreateTokenFile(p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
