#!/usr/bin/env bash
# setup-processes.sh: what the background-process tests need on a fresh
# Debian machine. TestBackgroundServerAnswersLaterCommand (tools) runs a
# small HTTP server and client in a sandbox with python3, or perl when
# python3 is missing; under CI=true it fails when neither exists.
# perl-base is Essential on Debian, so this usually installs nothing.
# Idempotent; exports nothing.
set -euo pipefail

if command -v python3 >/dev/null 2>&1 || command -v perl >/dev/null 2>&1; then
	echo "setup-processes: interpreter present: $(command -v python3 || command -v perl)"
	exit 0
fi
echo "setup-processes: neither python3 nor perl found; installing python3-minimal"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3-minimal
echo "setup-processes: installed $(command -v python3)"
