#!/usr/bin/env bash
# Rebuilds tools/third_party/mcp-go from the pristine mcp-go module (Go module
# cache) plus our patch, so anyone can check that the copy in the repository is
# exactly upstream + patch:  bash tools/third_party/update-mcp-go.sh && git diff --exit-code
# See tools/third_party/README.md for why the patch exists.
set -euo pipefail

version=v1.2.1
here=$(cd "$(dirname "$0")" && pwd)
dest=$here/mcp-go
patch=$here/mcp-go-$version-request-notifications.patch

echo "downloading github.com/mark3labs/mcp-go@$version into the module cache"
src=$(cd "$here" && GOFLAGS=-mod=mod go mod download -json "github.com/mark3labs/mcp-go@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $src ]] || { echo "module source not found (got '$src')" >&2; exit 1; }

echo "copying library sources (no tests, examples, docs) from $src to $dest"
rm -rf "$dest"
mkdir -p "$dest"
(cd "$src" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name 'LICENSE' -o -name '*.tmpl' \) \
	! -name '*_test.go' \
	! -path './examples/*' ! -path './e2e/*' ! -path './www/*' ! -path './testdata/*' ! -path './conformance/*' \
	! -path './server/testdata/*' ! -path './scripts/*' -print0 |
	xargs -0 -I{} cp --parents {} "$dest")
chmod -R u+w "$dest"

echo "applying $(basename "$patch")"
patch -s -d "$dest" -p1 < "$patch"
echo "done: $dest"
