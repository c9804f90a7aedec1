#!/bin/sh
# The whole test suite: formatting and vet, every package with the race
# detector, then short fuzzing runs of the path-safety and host-parsing
# targets beyond their seed corpora. Needs Go; the end-to-end tests also
# drive curl, wget, aria2c, pip, the go command, apt-get and npm. The S3
# tests run a real versitygw, which internal/s3test builds from the Go
# module proxy on first use (pinned in internal/s3test/tools/go.mod) and
# keeps in the user cache directory, so later runs start at once. The CIDN
# tests run a Kubernetes API server (apiextensions-apiserver on an embedded
# etcd) in their own module, tests/cidn, which keeps its dependencies out
# of httpmirror's go.mod; its first build takes several minutes.
set -eu
cd "$(dirname "$0")/.."

# The end-to-end tests drive real download clients and package managers
# (npm brings node; apt-get is Debian's own), and the status page is tested
# in a headless Chromium; install the missing ones from Debian when this
# machine can (the tests that need them skip otherwise).
missing=""
for tool in curl wget aria2c chromium npm; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	pkgs=$(echo "$missing" | sed 's/aria2c/aria2/')
	echo "installing$pkgs" >&2
	# A package that cannot be installed only makes its tests skip.
	if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null; }; then
		echo "could not install$pkgs; the tests that need them skip" >&2
	fi
fi

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" $unformatted >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 30m ./...
(cd tests/cidn && go vet ./... && go test -race -count=1 -timeout 30m ./...)
go test -run '^$' -fuzz '^FuzzCachePath$' -fuzztime 15s .
go test -run '^$' -fuzz '^FuzzCleanPath$' -fuzztime 10s ./internal/pipeline
go test -run '^$' -fuzz '^FuzzParseIPv4Loose$' -fuzztime 10s ./internal/netguard
go test -run '^$' -fuzz '^FuzzRange$' -fuzztime 10s ./internal/pipeline
