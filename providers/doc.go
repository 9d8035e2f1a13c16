/*
Package providers is the portable sandbox API.

The server sees every sandbox backend as a *Backend: one concrete type that
checks arguments, chooses fallbacks, discovers optional behaviour and names
the provider in its errors. Behind it stands a driver, a small value
implementing Provider, in a package of its own (providers/local,
providers/docker, providers/e2b, ...), like database/sql over
database/sql/driver or gocloud's blob.Bucket over driver.Bucket.

# Writing a driver

A driver is stateless and keyed by sandbox ID: everything it needs to serve
a sandbox can be rebuilt from the ID and the backend (labels, metadata, the
provider's API), so a restarted server, or a second replica, serves a sandbox
it did not create. Connection details may be cached, never only held.

Required: the Provider methods. Create, Get, List (by labels), Destroy, Exec,
ReadFile, WriteFile (atomic: the old content or the new, never a prefix),
Stat, ListFiles and Close. Return errors of the kinds in errors.go through
Errorf, worded so that the person or model reading them knows what to do:
ErrNotFound for unknown sandboxes and paths, ErrInvalidArgument for what the
caller can fix, ErrUnavailable (and only for what may pass) for a backend
that cannot be reached, ErrDenied for credentials or permissions the
backend refused, ErrTimeout, ErrTooLarge, ErrUnsupported. Hosted drivers
retry only what Transient and TransientStatus (retry.go) call transient,
so an unreachable or refusing provider fails in one attempt.

Already checked by Backend, so a driver need not check again: sandbox IDs
(empty, overlong, or naming a path: such an ID reads as not found), process
IDs (ValidProcessID), signal names (Signals, normalised by ParseSignal),
environment names and values (ValidateEnv), NUL bytes in commands, paths,
cwd and image, empty commands and paths, ListFiles' depth and limit, stdin
on a driver without CapStdin, and processes on a driver without them.

Optional, discovered by the methods a driver has (having the method is the
capability): Processes (background processes whose output, stdin and exit
status live in the sandbox, so any server can serve them), ProcessRunner (a
foreground run that becomes a process only when it must; without it
Backend.Run starts a process and follows it, and without Processes it falls
back to Exec, which cannot detach), Reaper (removes what a dead server left).
Capabilities remain only for behaviour no method shows: CapStdin,
CapKillTree, CapProcessIsolation, CapNetworkIsolation.

Settings: declare every value the driver reads as a Setting in the Driver it
registers (environment variable, optional flag, default, usage; Secret for
keys). The server lists them in --help, reads them as flag > environment >
.env file > default, and hands them over in Config; Config.Bool and
Config.Duration parse with errors that name the setting and where its value
came from. A driver never reads os.Getenv. Config.ServerID names this
server: label every sandbox with it, with the owning session
(LabelSession) and an expiry, so the reaper touches only what is this
server's to reap.

Registration, in the driver package:

	func init() {
		providers.Register("name", providers.Driver{Settings: Settings, Open: open})
	}

and a blank import in cmd/mcp-sandbox/main.go.

Tests: call providertest.Run from the driver's own test with a constructor
that returns a driver over the same backend each time. The suite drives the
driver through Backend, checks every capability both ways, that a fresh
driver serves another's sandbox, that the server's environment never reaches
a sandbox, and, when the driver has Processes, the process checks too.

# Fakes of hosted providers

A hosted provider is tested against a fake: a real server on loopback that
speaks the vendor's wire protocol closely enough for the vendor's own
official SDK, proven by a contract test that drives that SDK (pinned, from
npm, in the fake's sdktest/ directory; .ci/setup-node.sh installs every one)
against the fake. The Go driver is then tested against the same fake, with
faults injected: failed requests and their Retry-After, latency, stuck
creates and cut streams. Build the fake on providers/internal/fakebox, which
holds what every fake shares (temp-dir sandboxes where commands really run,
confined file operations, atomic writes, fault injection), so a fake is only
the vendor's routes and messages; e2bfake is the example. Each fake is also
a command (cmd/<name>fake) that prints the environment a client needs and
serves until interrupted.
*/
package providers
