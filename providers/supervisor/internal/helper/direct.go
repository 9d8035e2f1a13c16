package helper

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// A command that is nothing but plain words ("npm test", "ls -la src",
// "true") means the same to a shell as the program its first word names,
// run with the rest as arguments: sh -c would look the program up and exec
// it. Such a command is started directly, which saves a shell's start
// (milliseconds in a container, tens on a loaded machine) on every
// command. Anything a shell would read otherwise (quotes, $, globs,
// redirections, ;, &, |, ~, #, backslashes, assignments before the
// command), and every first word a shell treats itself (builtins and
// keywords), goes to sh as before; so does a program that cannot be found
// or started, so that sh gives the message and exit status it always did.

// shellOwn are the first words sh handles itself, or handles otherwise
// than the program of that name would (pwd prints the logical directory).
var shellOwn = map[string]bool{
	".": true, "alias": true, "bg": true, "break": true, "builtin": true, "case": true, "cd": true,
	"command": true, "continue": true, "declare": true, "do": true, "done": true, "elif": true,
	"else": true, "esac": true, "eval": true, "exec": true, "exit": true, "export": true, "fc": true,
	"fg": true, "fi": true, "for": true, "function": true, "getopts": true, "hash": true, "if": true,
	"in": true, "jobs": true, "let": true, "local": true, "pwd": true, "read": true, "readonly": true,
	"return": true, "select": true, "set": true, "shift": true, "source": true, "then": true,
	"time": true, "times": true, "trap": true, "type": true, "typeset": true, "ulimit": true,
	"umask": true, "unalias": true, "unset": true, "until": true, "wait": true, "while": true,
}

// plainWords splits command into its words when it is plain words only.
func plainWords(command string) ([]string, bool) {
	words := strings.FieldsFunc(command, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(words) == 0 || shellOwn[words[0]] || strings.ContainsRune(words[0], '=') {
		return nil, false
	}
	for i := 0; i < len(command); i++ {
		c := command[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" \t_./:@%+,=-", c) >= 0) {
			return nil, false
		}
	}
	return words, true
}

// directCommand returns the program and argv that start command without a
// shell in directory dir ("" for this process's own) with environment env,
// or ok false when a shell must run it.
func directCommand(command, dir string, env []string) (path string, argv []string, ok bool) {
	argv, ok = plainWords(command)
	if !ok {
		return "", nil, false
	}
	path, ok = lookPath(argv[0], dir, env)
	return path, argv, ok
}

// lookPath finds name as sh would: a name with a slash as it stands
// (relative to dir), else the first executable regular file of that name
// in the environment's PATH.
func lookPath(name, dir string, env []string) (string, bool) {
	at := func(p string) string {
		if filepath.IsAbs(p) || dir == "" {
			return p
		}
		return filepath.Join(dir, p)
	}
	if strings.Contains(name, "/") {
		return name, executable(at(name))
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	if pathEnv == "" {
		return "", false // sh's own default PATH may differ: let it decide
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if p := filepath.Join(d, name); executable(at(p)) {
			if !filepath.IsAbs(p) && !strings.Contains(p, "/") {
				p = "./" + p
			}
			return p, true
		}
	}
	return "", false
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && syscall.Access(p, 1) == nil
}

// withPWD sets PWD to dir, as a shell exports it to what it runs.
func withPWD(env []string, dir string) []string {
	if dir == "" {
		if wd, err := os.Getwd(); err == nil {
			dir = wd
		}
	}
	if !filepath.IsAbs(dir) {
		return env
	}
	return mergeEnv(env, []string{"PWD=" + dir})
}
