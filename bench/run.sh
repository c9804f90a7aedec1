#!/bin/sh
# Benchmarks httpmirror side by side with nginx proxy_cache on loopback and
# prints markdown tables (see docs/benchmarks.md).
#
# Usage: ./bench/run.sh [ARGS...] [-- LOGGING-ARGS...]
#
# Installs nginx, wrk and aria2c from Debian when they are missing, builds
# httpmirror and the harness into a temporary directory, and runs the
# harness twice:
#
#  1. today's configuration: access logs off, wrk -t2, scenarios
#     a,b,c,e,f,g,h, with a deadline of 20 minutes (-timeout 20m);
#  2. the logging configuration: access logs on on both servers
#     (-access-log), wrk -t1, scenarios a, b, g and h (-timeout 8m).
#
# ARGS go to the first run and LOGGING-ARGS to the second, after each run's
# own defaults, so they override them (for example -rounds 5, -only a,b,
# -keep). When ARGS choose scenarios with -only and there is no "--", only
# the first run happens: ./bench/run.sh -only f runs (f) alone. A run given
# "-only none" is skipped: ./bench/run.sh -only none -- -rounds 1 runs only
# the logging configuration. At the end, the (a) rows of both runs are
# printed together.
#
# Everything it starts and writes is removed at the end, also on failure,
# ctrl-C or SIGTERM (passed on to the harness, which then reports what it
# measured).
set -eu
cd "$(dirname "$0")/.."

# Split the arguments at the first "--", each part kept quoted for eval.
quote() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
first="" second="" sep=false only=false skip1=false skip2=false prev=""
for a in "$@"; do
	if [ "$sep" = false ] && [ "$a" = "--" ]; then
		sep=true prev=""
		continue
	fi
	case $prev/$a in
	-only/none | --only/none | */-only=none | */--only=none)
		if [ "$sep" = true ]; then skip2=true; else skip1=true; fi ;;
	esac
	case $a in -only | --only | -only=* | --only=*) [ "$sep" = true ] || only=true ;; esac
	if [ "$sep" = true ]; then second="$second$(quote "$a")"; else first="$first$(quote "$a")"; fi
	prev=$a
done
if [ "$only" = true ] && [ "$sep" = false ]; then
	skip2=true
fi

. ./bench/install.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/httpmirror-bench-build.XXXXXX")
harness_pid="" interrupted=""
trap 'rm -rf "$tmp"' EXIT
# SIGINT (ctrl-C) and SIGTERM are passed on to the harness, which stops,
# prints what it measured, and the script ends.
pass() {
	interrupted=$1
	[ -z "$harness_pid" ] || kill "-$2" "$harness_pid" 2>/dev/null || true
}
trap 'pass 130 INT' INT
trap 'pass 143 TERM' TERM

echo "building httpmirror and the harness" >&2
go build -buildvcs=false -o "$tmp/httpmirror" ./cmd/httpmirror
go build -buildvcs=false -o "$tmp/harness" ./bench/harness

# runharness N DEFAULTS... -- ARGS...: runs the harness with its report
# going to $tmp/reportN.md, then prints the report. The work directory
# (data, caches, logs) lives in $tmp too, so it goes even if the harness is
# killed; with -keep the harness makes its own and leaves it for
# inspection. Every run has a deadline (-timeout), so this never hangs.
runharness() {
	n=$1
	shift
	dir="-dir=$tmp/work$n"
	for a in "$@"; do
		case $a in -keep | --keep | -keep=true | --keep=true) dir="" ;; esac
	done
	PATH="$PATH:/usr/sbin:/sbin" "$tmp/harness" -httpmirror "$tmp/httpmirror" ${dir:+"$dir"} "$@" >"$tmp/report$n.md" &
	harness_pid=$!
	rc=0
	while :; do
		wait "$harness_pid" && rc=0 || rc=$?
		# A trapped signal ends the wait early; wait again until the
		# harness itself has exited.
		kill -0 "$harness_pid" 2>/dev/null || break
	done
	harness_pid=""
	cat "$tmp/report$n.md"
	return "$rc"
}

status=0
if [ "$skip1" = false ]; then
	echo "run 1 of 2: access logs off, wrk -t2" >&2
	eval "set -- -timeout 20m $first"
	runharness 1 "$@" || status=$?
fi
if [ "$skip2" = false ] && [ -z "$interrupted" ]; then
	[ "$skip1" = true ] || echo
	echo "run 2 of 2: access logs on, wrk -t1, scenarios a, b, g and h" >&2
	eval "set -- -access-log -wrk-threads 1 -only a,b,g,h -timeout 8m $second"
	runharness 2 "$@" || status=$?
fi

# (a) of both configurations side by side, when both measured it.
a1=$(grep -h '^| (a) ' "$tmp/report1.md" 2>/dev/null || true)
a2=$(grep -h '^| (a) ' "$tmp/report2.md" 2>/dev/null || true)
if [ -n "$a1" ] && [ -n "$a2" ]; then
	echo
	echo "## (a) warm 4 KiB hits in both configurations"
	echo
	echo "| scenario | metric | httpmirror | nginx | httpmirror/nginx | target (httpmirror) | met |"
	echo "|---|---|--:|--:|--:|---|---|"
	echo "$a1"
	echo "$a2"
fi
if [ -n "$interrupted" ]; then
	exit "$interrupted"
fi
exit "$status"
