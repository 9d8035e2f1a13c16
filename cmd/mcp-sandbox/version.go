package main

import (
	"runtime/debug"
)

// version names this build in --version, serverInfo.version and the logs.
var version = buildVersion(debug.ReadBuildInfo())

// buildVersion reads the version the Go toolchain stamped into the binary:
// the module's version when it was installed as a module (go install
// ...@v1.2.3), else the VCS revision it was built from (with +dirty for
// uncommitted changes), else "devel".
func buildVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}
