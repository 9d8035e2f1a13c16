#!/usr/bin/env bash
# Rebuilds the patched third-party code in third_party from its pristine
# sources (Go module cache) plus our patches, as packages of this module (no
# replace directive, so `go install ...@version` works), so anyone can check
# that each copy in the repository is exactly upstream + patch + the import
# path rewrite:
#
#   bash third_party/update.sh && git diff --exit-code third_party
#
# See third_party/README.md for why each patch exists.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
self=github.com/mcp-sandbox/mcp-sandbox/third_party

# rebuild MODULE VERSION DIR PATCHES: copy MODULE@VERSION's library sources (no
# tests, examples, docs or CI files) into DIR, apply the PATCHES (a glob, in
# name order), and make it a
# part of this module: no go.mod of its own, imports of MODULE (and of the
# other copy) rewritten to their paths here.
rebuild() {
	local module=$1 version=$2 dest=$here/$3 patches=$4 src patch
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
	for patch in "$here"/$patches; do
		echo "applying $(basename "$patch")"
		patch -s -d "$dest" -p1 < "$patch"
	done
	rm -f "$dest/go.mod" "$dest/go.sum"
	find "$dest" -name '*.go' -print0 | xargs -0 sed -i \
		-e "s#\"github.com/mark3labs/mcp-go/#\"$self/mcp-go/#g" \
		-e "s#\"github.com/santhosh-tekuri/jsonschema/v6\"#\"$self/jsonschema\"#g" \
		-e "s#\"github.com/santhosh-tekuri/jsonschema/v6/#\"$self/jsonschema/#g"
}

rebuild github.com/mark3labs/mcp-go v1.2.1 mcp-go 'mcp-go-v1.2.1-*.patch'
rebuild github.com/santhosh-tekuri/jsonschema/v6 v6.0.2 jsonschema 'jsonschema-v6.0.2-*.patch'
echo "done"
