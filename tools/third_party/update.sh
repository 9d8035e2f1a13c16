#!/usr/bin/env bash
# Rebuilds the patched third-party modules in tools/third_party from their
# pristine sources (Go module cache) plus our patches, so anyone can check that
# each copy in the repository is exactly upstream + patch:
#
#   bash tools/third_party/update.sh && git diff --exit-code tools/third_party
#
# See tools/third_party/README.md for why each patch exists.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

# rebuild MODULE VERSION DIR PATCH: copy MODULE@VERSION's library sources (no
# tests, examples, docs or CI files) into DIR and apply PATCH.
rebuild() {
	local module=$1 version=$2 dest=$here/$3 patch=$here/$4 src
	echo "downloading $module@$version into the module cache"
	src=$(cd "$here" && GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $src ]] || { echo "module source not found (got '$src')" >&2; exit 1; }
	echo "copying library sources from $src to $dest"
	rm -rf "$dest"
	mkdir -p "$dest"
	(cd "$src" && find . -type f ! -name '*_test.go' ! -name '*.md' ! -name 'go.work*' ! -name '.*' \
		! -path './.*' ! -path './examples/*' ! -path './e2e/*' ! -path './www/*' ! -path './testdata/*' \
		! -path './conformance/*' ! -path './server/testdata/*' ! -path './scripts/*' ! -path './logo.png' -print0 |
		xargs -0 -I{} cp --parents {} "$dest")
	chmod -R u+w "$dest"
	echo "applying $(basename "$patch")"
	patch -s -d "$dest" -p1 < "$patch"
}

rebuild github.com/mark3labs/mcp-go v1.2.1 mcp-go mcp-go-v1.2.1-request-notifications.patch
rebuild github.com/santhosh-tekuri/jsonschema/v6 v6.0.2 jsonschema jsonschema-v6.0.2-lazy-drafts.patch
echo "done"
