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
