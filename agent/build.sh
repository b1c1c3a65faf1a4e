#!/bin/sh
# Builds the guest agent as static binaries: dist/banger-agent-amd64 and -arm64.
# Idempotent: skips the build when no source changed since the last one.
# Works as root on a fresh machine with HOME unset (caches live under agent/.gocache).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if ! command -v go >/dev/null 2>&1; then
	echo "build.sh: the Go toolchain is missing; install it: apt-get install -y golang-go" >&2
	exit 1
fi

export GOCACHE="$here/.gocache/build"
export GOPATH="$here/.gocache/gopath"
export GOFLAGS=-trimpath
export CGO_ENABLED=0
export GO111MODULE=on
export GOTOOLCHAIN=local 2>/dev/null || true

version=${BANGER_AGENT_VERSION:-$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' ../package.json 2>/dev/null | head -n 1)}
version=${version:-dev}

mkdir -p dist
# The stamp covers the sources, the version and the Go release: any change rebuilds.
stamp=$( (cat go.mod ./*.go; echo "$version"; go version) | sha256sum | cut -d' ' -f1)
if [ -f dist/.stamp ] && [ "$(cat dist/.stamp)" = "$stamp" ] \
	&& [ -x dist/banger-agent-amd64 ] && [ -x dist/banger-agent-arm64 ]; then
	exit 0
fi

for arch in amd64 arm64; do
	GOOS=linux GOARCH=$arch go build -ldflags "-s -w -X main.version=$version" \
		-o "dist/.banger-agent-$arch.tmp" .
	mv "dist/.banger-agent-$arch.tmp" "dist/banger-agent-$arch"
done
echo "$stamp" > dist/.stamp
echo "built agent $version: $here/dist/banger-agent-{amd64,arm64}"
