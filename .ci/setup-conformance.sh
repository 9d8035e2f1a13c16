#!/usr/bin/env bash
# Installs what the MCP client tests in cmd/mcp-sandbox need: Node.js >= 22.19
# and the pinned npm packages of cmd/mcp-sandbox/testdata/js
# (@modelcontextprotocol/conformance, @modelcontextprotocol/inspector,
# @modelcontextprotocol/sdk). Idempotent; safe to run again.
#
# Where things end up (the tests look there by themselves; nothing to export):
#   Node 22   /opt/mcp-sandbox/node22/node_modules/node/bin/node, the same
#             prefix, version and NODE file as .ci/setup-node.sh (override the
#             prefix with MCP_SANDBOX_NODE_PREFIX); skipped when MCP_SANDBOX_NODE
#             or the `node` on PATH is already >= 22.19
#   packages  cmd/mcp-sandbox/testdata/js/node_modules  (git-ignored)
# Overrides the tests honour: MCP_SANDBOX_NODE (a node >= 22.19 binary) and
# MCP_SANDBOX_JS_MODULES (a node_modules directory holding the packages).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${MCP_SANDBOX_NODE_PREFIX:-/opt/mcp-sandbox/node22}
node_version=22.23.3
node22=$prefix/node_modules/node/bin/node
jsdir=$repo/cmd/mcp-sandbox/testdata/js

# node_ok BIN: BIN runs and is at least 22.19 (the inspector's engines field).
node_ok() {
	"$1" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=19)?0:1)' 2>/dev/null
}

if command -v npm >/dev/null; then
	:
else
	echo "setup-conformance: npm not found; installing Debian's nodejs and npm"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

if [[ -n ${MCP_SANDBOX_NODE:-} ]] && node_ok "$MCP_SANDBOX_NODE"; then
	node=$MCP_SANDBOX_NODE
	echo "setup-conformance: using MCP_SANDBOX_NODE=$node ($("$node" --version))"
elif command -v node >/dev/null && node_ok "$(command -v node)"; then
	node=$(command -v node)
	echo "setup-conformance: using $node ($("$node" --version))"
elif [[ -x $node22 ]] && node_ok "$node22"; then
	node=$node22
	echo "setup-conformance: using $node ($("$node" --version)), already installed"
else
	echo "setup-conformance: node on PATH is $(node --version 2>/dev/null || echo missing); installing node@$node_version into $prefix"
	mkdir -p "$prefix"
	[[ -f $prefix/package.json ]] || echo '{"name":"mcp-sandbox-node22","private":true}' >"$prefix/package.json"
	npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "node@$node_version"
	echo "$node22" >"$prefix/NODE"
	node=$node22
	node_ok "$node" || { echo "setup-conformance: $node is not Node >= 22.19" >&2; exit 1; }
	echo "setup-conformance: installed $node ($("$node" --version))"
fi

# npm ci runs package scripts with the node first on PATH: make it Node 22.
export PATH=$(dirname "$node"):$PATH
stamp=$jsdir/node_modules/.mcp-sandbox-lock.sha256
want=$(sha256sum "$jsdir/package-lock.json" | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
	echo "setup-conformance: $jsdir/node_modules is up to date with package-lock.json"
else
	echo "setup-conformance: npm ci in $jsdir"
	(cd "$jsdir" && npm ci --no-audit --no-fund --loglevel=error)
	echo "$want" >"$stamp"
fi

for bin in conformance inspector; do
	[[ -e $jsdir/node_modules/.bin/$bin ]] || { echo "setup-conformance: $bin missing after install" >&2; exit 1; }
done
echo "setup-conformance: ready (node $("$node" --version); conformance $(cd "$jsdir" && "$node" -p 'require("@modelcontextprotocol/conformance/package.json").version'))"
