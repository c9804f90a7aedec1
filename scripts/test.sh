#!/bin/sh
# The whole test suite: formatting and vet, every package with the race
# detector, then a short fuzzing run of the path-safety target beyond its
# seed corpus. Needs Go; end-to-end tests use curl when it is installed.
# The S3 tests run a real versitygw, which internal/s3test builds from the
# Go module proxy on first use (pinned in internal/s3test/tools/go.mod) and
# keeps in the user cache directory, so later runs start at once.
set -eu
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" $unformatted >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 30m ./...
go test -run '^$' -fuzz '^FuzzCachePath$' -fuzztime 15s .
