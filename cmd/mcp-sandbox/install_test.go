package main

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const modulePath = "github.com/mcp-sandbox/mcp-sandbox"

// `go install github.com/mcp-sandbox/mcp-sandbox/cmd/mcp-sandbox@VERSION`
// works: the checkout, served at a made-up version by a module proxy of
// files, installs and reports that version. A replace directive in go.mod,
// or a package that lives outside the module, fails it.
func TestGoInstallAtAVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server from a module proxy (about a minute)")
	}
	// A version of its own each run: the module cache keeps what it
	// extracted, and a rerun must build the checkout as it is now.
	version := fmt.Sprintf("v0.0.0-test.%d", time.Now().UnixNano())
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	proxy := t.TempDir()
	writeModuleProxy(t, proxy, root, version)

	goEnv := func(key string) string {
		out, err := exec.Command("go", "env", key).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", key, err)
		}
		return strings.TrimSpace(string(out))
	}
	// The module comes only from our proxy; dependencies from the module
	// cache the tests already use (so that their builds are cached too),
	// else from the configured proxies.
	modcache := goEnv("GOMODCACHE")
	t.Cleanup(func() { // what this run added to the module cache
		os.RemoveAll(filepath.Join(modcache, filepath.FromSlash(modulePath)+"@"+version))
		matches, _ := filepath.Glob(filepath.Join(modcache, "cache", "download", filepath.FromSlash(modulePath), "@v", version+".*"))
		for _, m := range matches {
			os.Remove(m)
		}
	})
	proxies := "file://" + filepath.ToSlash(proxy)
	if p := goEnv("GOPROXY"); p != "" && p != "off" {
		proxies += "," + p
	}
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", modulePath+"/cmd/mcp-sandbox@"+version)
	cmd.Dir = t.TempDir() // outside any module
	cmd.Env = append(os.Environ(),
		"GOPROXY="+proxies,
		"GONOSUMDB="+modulePath, "GOPRIVATE=", "GONOPROXY=",
		"GOFLAGS=-modcacherw", // so that the cleanup can remove the extracted module
		"GOBIN="+gobin, "GOWORK=off",
	)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install ...@%s: %v\n%s", version, err, out)
	}
	t.Logf("go install took %v", time.Since(start).Round(time.Second))
	out, err := exec.Command(filepath.Join(gobin, "mcp-sandbox"), "--version").CombinedOutput()
	if err != nil || string(out) != "mcp-sandbox "+version+"\n" {
		t.Fatalf("the installed binary's --version: %v %q, want %q", err, out, "mcp-sandbox "+version+"\n")
	}
}

// writeModuleProxy lays out, under dir, what a module proxy serves for the
// module in root at version: @v/list, .info, .mod and .zip.
func writeModuleProxy(t *testing.T, dir, root, version string) {
	t.Helper()
	v := filepath.Join(dir, filepath.FromSlash(modulePath), "@v")
	if err := os.MkdirAll(v, 0o755); err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]any{"Version": version, "Time": time.Now().UTC().Format(time.RFC3339)})
	for name, data := range map[string][]byte{"list": []byte(version + "\n"), version + ".info": info, version + ".mod": mod} {
		if err := os.WriteFile(filepath.Join(v, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(v, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	if err := addModuleFiles(zw, root, modulePath+"@"+version); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// addModuleFiles writes the files a module zip holds, each under prefix/:
// what version control holds (uncommitted changes and new files included,
// build outputs and installed packages not), leaving out nested modules as
// the go command does.
func addModuleFiles(zw *zip.Writer, root, prefix string) error {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("listing the module's files with git: %w", err)
	}
	nested := map[string]bool{}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	for _, rel := range files {
		if dir, name := path.Split(rel); name == "go.mod" && dir != "" {
			nested[dir] = true
		}
	}
	for _, rel := range files {
		if inNestedModule(rel, nested) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, rel))
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted but not yet committed, or a link
		}
		w, err := zw.Create(prefix + "/" + rel)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return nil
}

func inNestedModule(rel string, nested map[string]bool) bool {
	for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
		if nested[dir+"/"] {
			return true
		}
	}
	return false
}
