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
# Fuzz the decoders of bytes from outside for a bounded time each (about a minute in all).
for t in FuzzRoutedFrame FuzzGatewaySubject FuzzGatewayJSON FuzzGatewayMsgpack FuzzArgsDecode; do go test -run='^$' -fuzz="^$t\$" -fuzztime=10s . ; done
go test -run='^$' -fuzz='^FuzzDirectoryMessage$' -fuzztime=10s ./internal/directory
go test -run='^$' -fuzz='^FuzzCheck$' -fuzztime=10s ./internal/wire
if [ -d e2e ]; then
  (cd e2e && go vet ./... && go test -race -count=1 ./...)
fi
