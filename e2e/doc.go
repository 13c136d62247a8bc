// Package e2e holds the end-to-end tests of the Notifier with the real tools
// its users debug and deploy with: the natscli `nats` command (v0.5.0) and a
// standalone nats-server process (v2.15.2), plus a check of the repository's
// docker-compose.yml.
//
// It is a separate module so that the CLI and its many dependencies never
// enter the main module's go.mod. Both tools are `tool` directives of this
// module; the test set-up builds them once per `go test` run into a temporary
// directory (the Go build cache makes later runs fast), so nothing but Go and
// the module proxy is needed:
//
//	cd e2e && go vet ./... && go test -race -count=1 ./...
//
// Every CLI test runs twice, against the embedded server of package testenv
// and against a standalone nats-server process, both on 127.0.0.1. The CLI is
// run with --no-context and with HOME and XDG_CONFIG_HOME pointing at a
// temporary directory, so the user's nats contexts are neither read nor
// written. The package has no non-test code.
package e2e
