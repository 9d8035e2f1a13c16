#!/usr/bin/env bash
# Installs Node 22 (from the npm package `node`) and the npm packages that the
# repository's JS contract tests need. Idempotent and non-interactive.
#
# Produces:
#   /opt/mcp-sandbox/node22/node_modules/node/bin/node   Node 22 (override the
#       prefix with MCP_SANDBOX_NODE_PREFIX). Tests find it through the
#       MCP_SANDBOX_NODE env var (a path to a node binary), falling back to
#       this path. The same path is written to /opt/mcp-sandbox/node22/NODE
#       for other scripts to read.
#   providers/*/*fake/sdktest/node_modules  each vendor SDK its contract test pins,
#       installed from that directory's package-lock.json (`npm ci`); git-ignored.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${MCP_SANDBOX_NODE_PREFIX:-/opt/mcp-sandbox/node22}"
node_version="22.23.3"
node_bin="$prefix/node_modules/node/bin/node"

if ! command -v npm >/dev/null; then
	echo "setup-node: npm is required (install Node.js and npm first)" >&2
	exit 1
fi

if [[ -x "$node_bin" ]] && [[ "$("$node_bin" --version)" == "v$node_version" ]]; then
	echo "setup-node: Node $node_version already at $node_bin"
else
	echo "setup-node: installing Node $node_version into $prefix"
	mkdir -p "$prefix"
	[[ -f "$prefix/package.json" ]] || echo '{"name":"mcp-sandbox-node22","private":true}' > "$prefix/package.json"
	npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "node@$node_version"
fi
"$node_bin" --version
echo "$node_bin" > "$prefix/NODE"

# Every vendor fake's contract test pins the vendor's SDK in its own sdktest/.
for sdktest in "$repo"/providers/*/*fake/sdktest; do
	[[ -f "$sdktest/package-lock.json" ]] || continue
	stamp="$sdktest/node_modules/.mcp-sandbox-lock.sha256"
	want="$(sha256sum "$sdktest/package-lock.json" | cut -d' ' -f1)"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
		echo "setup-node: $sdktest/node_modules is up to date"
		continue
	fi
	echo "setup-node: npm ci in $sdktest"
	(cd "$sdktest" && PATH="$(dirname "$node_bin"):$PATH" npm ci --no-audit --no-fund --loglevel=error)
	echo "$want" > "$stamp"
done
