#!/bin/sh
# build.sh builds the rosetta binary the way the container image ships it:
# static (CGO_ENABLED=0: no libc, so it runs on a distroless or scratch
# base), with no build paths in it (-trimpath) and without the symbol
# table and DWARF (-ldflags "-s -w").
#
# deploy/Dockerfile runs it in its build stage and `make build-static` runs
# it for bin/rosetta-static, so the two cannot build differently; the test
# in deploy/ checks that both call it and that its output is static.
#
# Usage: deploy/build.sh OUTPUT
#
# The environment passes through to go build: GOOS and GOARCH cross-compile
# (the Dockerfile sets them from buildx's TARGETOS and TARGETARCH), and
# ROSETTA_VERSION, when set, is what `rosetta version` prints.
set -eu

if [ "$#" -ne 1 ]; then
	echo "usage: deploy/build.sh OUTPUT" >&2
	exit 2
fi
case $1 in
/*) out=$1 ;;
*) out=$(pwd)/$1 ;;
esac
cd "$(dirname "$0")/.."

ldflags="-s -w"
if [ -n "${ROSETTA_VERSION:-}" ]; then
	ldflags="$ldflags -X main.version=$ROSETTA_VERSION"
fi
CGO_ENABLED=0 exec go build -trimpath -ldflags="$ldflags" -o "$out" ./cmd/rosetta
