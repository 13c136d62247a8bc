#!/usr/bin/env bash
# Runs every test: the library (race detector on), then the end-to-end suite
# with the real nats CLI and a standalone nats-server, built from the Go module
# proxy by the e2e module's test set-up.
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
go test -race -count=1 ./...
if [ -d e2e ]; then
  (cd e2e && go vet ./... && go test -race -count=1 ./...)
fi
