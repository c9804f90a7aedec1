#!/bin/sh
# Profiles httpmirror where the benchmark measures it: the hit path (the
# benchmark's scenario (a), warm 4 KiB hits under wrk) and the fill path
# (scenario (c), a lone client and then a burst on cold objects). The
# harness takes the profiles from httpmirror's admin listener
# (/debug/pprof) around its measured runs. It also profiles the in-process
# BenchmarkHitHandler, which leaves net/http and the kernel out.
#
# Usage: ./bench/profile.sh [output directory]
# Prints the top functions; the profiles stay in the output directory (a
# new temporary directory by default) for `go tool pprof`.
set -eu
cd "$(dirname "$0")/.."

. ./bench/install.sh

out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/httpmirror-profiles.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/httpmirror-profile-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

go build -buildvcs=false -o "$tmp/httpmirror" ./cmd/httpmirror
go build -buildvcs=false -o "$tmp/harness" ./bench/harness
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$out/hit" "$out/fill"
echo "== hit path: scenario (a)" >&2
"$tmp/harness" -httpmirror "$tmp/httpmirror" -profile "$out/hit" \
	-only a -rounds 1 -dir "$tmp/work" >"$out/hit-run.md"
echo "== fill path: scenario (c)" >&2
"$tmp/harness" -httpmirror "$tmp/httpmirror" -profile "$out/fill" \
	-only c -rounds 1 -dir "$tmp/work" >"$out/fill-run.md"
echo "== BenchmarkHitHandler/4KiB (in process)" >&2
go test -run '^$' -bench 'BenchmarkHitHandler/4KiB' -benchtime 3s -benchmem \
	-cpuprofile "$out/hithandler.cpu" -memprofile "$out/hithandler.mem" \
	-o "$out/httpmirror.test" . >"$out/hithandler.txt"

top() {
	echo
	echo "### $1"
	shift
	go tool pprof -top -nodecount 25 "$@" 2>/dev/null |
		sed -n '/^Showing\|^ *flat/,$p'
}
{
	top "hit path (a), CPU" "$out"/hit/*.cpu
	top "hit path (a), CPU, cumulative" -cum "$out"/hit/*.cpu
	top "hit path (a), allocated bytes" -sample_index=alloc_space -base "$out/hit/01.allocs.base" "$out/hit/01.allocs"
	top "hit path (a), allocations" -sample_index=alloc_objects -base "$out/hit/01.allocs.base" "$out/hit/01.allocs"
	top "fill path (c), CPU" "$out"/fill/*.cpu
	top "fill path (c), CPU, cumulative" -cum "$out"/fill/*.cpu
	top "fill path (c), allocated bytes" -sample_index=alloc_space -base "$out/fill/02.allocs.base" "$out/fill/02.allocs"
	top "fill path (c), allocations" -sample_index=alloc_objects -base "$out/fill/02.allocs.base" "$out/fill/02.allocs"
	echo
	echo "### BenchmarkHitHandler/4KiB"
	grep '^Benchmark' "$out/hithandler.txt"
	top "BenchmarkHitHandler/4KiB, CPU" "$out/httpmirror.test" "$out/hithandler.cpu"
	top "BenchmarkHitHandler/4KiB, allocations" -sample_index=alloc_objects "$out/httpmirror.test" "$out/hithandler.mem"
} | tee "$out/summary.txt"
echo >&2
echo "profiles and summary.txt are in $out" >&2
