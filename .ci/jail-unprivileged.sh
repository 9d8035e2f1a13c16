#!/usr/bin/env bash
# jail-unprivileged.sh: the local sandbox's isolation must hold for a server
# started by an ordinary user too, not only by root. Builds the jail's and
# the local driver's tests and runs them as the unprivileged user jailtest
# (created when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

id jailtest >/dev/null 2>&1 || useradd --create-home jailtest
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/jail.test" ./providers/local/jail
go test -c -o "$work/local.test" ./providers/local
chmod 755 "$work" "$work/jail.test" "$work/local.test"
# CI passes through: under CI=true nothing may skip. HOME and TMPDIR are
# the user's own, as for a server that user starts. (Whether the embedded
# reaper is current is a build question, checked as root.)
for t in jail local; do
	echo "-- $t, as jailtest"
	(cd /tmp && runuser -u jailtest -- env CI="${CI:-}" HOME=/home/jailtest TMPDIR=/tmp "$work/$t.test" -test.count=1 -test.skip '^TestEmbeddedReaperIsCurrent$')
done
