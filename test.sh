#!/usr/bin/env bash
# Runs every test: the library (race detector on), then the end-to-end suite
# with the real nats CLI and a standalone nats-server, built from the Go module
# proxy by the e2e module's test set-up.
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
# One package at a time: the root and directory packages each run a 100-node
# scale test, and two at once on a 2-core machine starve the probes.
go test -race -count=1 -p 1 ./...
# Fuzz the decoders of bytes from outside, each for a number of inputs (about
# 10 s each on a 2-core machine, a minute in all). A count, not a duration: Go
# 1.26's fuzz coordinator can fail a -fuzztime=10s run with a bare "context
# deadline exceeded" at the deadline, having found nothing (go.dev/issue/75804,
# fixed in Go 1.27).
for t in FuzzRoutedFrame:40000 FuzzGatewaySubject:40000 FuzzGatewayJSON:30000 FuzzGatewayMsgpack:30000 FuzzArgsDecode:25000; do
  go test -run='^$' -fuzz="^${t%%:*}\$" -fuzztime="${t##*:}x" .
done
go test -run='^$' -fuzz='^FuzzDirectoryMessage$' -fuzztime=20000x ./internal/directory
go test -run='^$' -fuzz='^FuzzCheck$' -fuzztime=150000x ./internal/wire
if [ -d e2e ]; then
  (cd e2e && go vet ./... && go test -race -count=1 ./...)
fi
