#!/bin/sh
# Benchmarks httpmirror side by side with nginx proxy_cache on loopback and
# prints a markdown table (see docs/benchmarks.md).
#
# Installs nginx and wrk from Debian when they are missing, builds httpmirror
# and the harness into a temporary directory, and runs the harness; extra
# arguments go to the harness (for example -rounds 5, -only a,b, -keep).
# Everything it starts and writes is removed at the end, also on failure or
# ctrl-C.
set -eu
cd "$(dirname "$0")/.."

. ./bench/install.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/httpmirror-bench-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building httpmirror and the harness" >&2
go build -buildvcs=false -o "$tmp/httpmirror" ./cmd/httpmirror
go build -buildvcs=false -o "$tmp/harness" ./bench/harness

# The work directory (data, caches, logs) lives in $tmp too, so it goes
# even if the harness is killed; with -keep the harness makes its own and
# leaves it for inspection.
keep=false
for a in "$@"; do
	case $a in -keep | --keep | -keep=true | --keep=true) keep=true ;; esac
done
if [ "$keep" = false ]; then
	set -- "-dir=$tmp/work" "$@"
fi
PATH="$PATH:/usr/sbin:/sbin" "$tmp/harness" -httpmirror "$tmp/httpmirror" "$@"
