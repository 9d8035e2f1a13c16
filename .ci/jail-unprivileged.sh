#!/usr/bin/env bash
# jail-unprivileged.sh: the local sandbox's isolation must hold for a server
# started by an ordinary user too, not only by root. Builds the jail tests
# and runs them as the unprivileged user jailtest (created when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

id jailtest >/dev/null 2>&1 || useradd --create-home jailtest
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/jail.test" ./providers/local/jail
chmod 755 "$work" "$work/jail.test"
# CI passes through: under CI=true nothing may skip.
(cd /tmp && runuser -u jailtest -- env CI="${CI:-}" "$work/jail.test" -test.count=1)
