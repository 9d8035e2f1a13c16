package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func noEnv(string) (string, bool) { return "", false }

// A .env in the working directory is the project's, not the server's: it
// configures the server only when named.
func TestDotEnvIsReadOnlyWhenNamed(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".env"), []byte("MCP_SANDBOX_COMMAND_TIMEOUT=7s\n"), 0o600)
	t.Chdir(dir)
	state := []string{"--state-dir", t.TempDir()}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"not named", state, nil, "2m0s"},
		{"named by flag", append([]string{"--env-file", ".env"}, state...), nil, "7s"},
		{"named by the environment", state, map[string]string{"MCP_SANDBOX_ENV_FILE": filepath.Join(dir, ".env")}, "7s"},
	}
	for _, tc := range tests {
		lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		cfg, err := loadConfig(tc.args, lookup, io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := cfg.Limits.DefaultTimeout.String(); got != tc.want {
			t.Errorf("%s: command timeout %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestBadValueSaysItCameFromDotEnv(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "server.env")
	os.WriteFile(envFile, []byte("MCP_SANDBOX_KEEP_SANDBOXES=maybe\n"), 0o600)
	_, err := loadConfig([]string{"--env-file", envFile}, noEnv, io.Discard)
	want := `invalid value "maybe" for --keep-sandboxes (MCP_SANDBOX_KEEP_SANDBOXES, from the .env file ` + envFile + `): use true or false`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	_, err = loadConfig(nil, func(k string) (string, bool) { return "maybe", k == "MCP_SANDBOX_KEEP_SANDBOXES" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "from the environment") {
		t.Fatalf("a value from the environment must say so: %v", err)
	}
}

func TestUnknownSettingsNameTheClosestOne(t *testing.T) {
	environ := []string{"PATH=/bin", "MCP_SANDBOX_COMAND_TIMEOUT=1m", "MCP_SANDBOX_ID=sbx", "MCP_SANDBOX_HTTP=:8080", "MCP_SANDBOX_WHATEVER_ELSE=1"}
	dotenv := map[string]string{"MCP_SANDBOX_PROVDER": "docker", "E2B_API_KEY": "k", "MCP_SANDBOX_DOCKER_MEMROY": "1g"}
	got := unknownSettings(knownSettingNames(), environ, dotenv, "/srv/.env")
	want := []string{
		"MCP_SANDBOX_COMAND_TIMEOUT (in the environment) is not a setting of mcp-sandbox and is ignored; did you mean MCP_SANDBOX_COMMAND_TIMEOUT?",
		"MCP_SANDBOX_DOCKER_MEMROY (in the .env file /srv/.env) is not a setting of mcp-sandbox and is ignored; did you mean MCP_SANDBOX_DOCKER_MEMORY?",
		"MCP_SANDBOX_PROVDER (in the .env file /srv/.env) is not a setting of mcp-sandbox and is ignored; did you mean MCP_SANDBOX_PROVIDER?",
		"MCP_SANDBOX_WHATEVER_ELSE (in the environment) is not a setting of mcp-sandbox and is ignored",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The warning reaches the operator: the server logs it at start-up.
func TestServerWarnsOfMisspeltSetting(t *testing.T) {
	cmd := exec.Command(binary)
	cmd.Env = []string{"HOME=" + t.TempDir(), "MCP_SANDBOX_STATE_DIR=" + t.TempDir(), "MCP_SANDBOX_MAX_OUTPUT_BYTE=1KiB"}
	cmd.Stdin = strings.NewReader("") // the end of stdin ends the server
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "MCP_SANDBOX_MAX_OUTPUT_BYTE (in the environment) is not a setting") ||
		!strings.Contains(string(out), "did you mean MCP_SANDBOX_MAX_OUTPUT_BYTES?") {
		t.Errorf("no warning naming the setting meant:\n%s", out)
	}
}
