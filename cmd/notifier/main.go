// Command notifier tries out and debugs a Notifier bus on NATS: publish/subscribe
// and RPC addressed by (object, id, cmd), with full and weighted slice
// registrations.
//
//	notifier demo                 the main job, on an embedded NATS server
//	notifier serve                a NATS server (or --url) with an example service
//	notifier pub|rpc|sub --url U  talk to any bus
//
// Run "notifier help" for the details of every command.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0 // success
	exitFail  = 1 // the command failed: NATS unreachable, an RPC error, ...
	exitUsage = 2 // bad command line
)

// command is one subcommand.
type command struct {
	name    string
	summary string // one line, for the command list
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands in the order "notifier help" lists them.
var commands = []command{
	{"demo", "run the main job: two Notifiers, full and weighted slice registrations, RPC", runDemo},
	{"serve", "run a NATS server (or join one with --url) with the example service \"demo\"", runServe},
	{"pub", "publish notifications", runPub},
	{"rpc", "make an RPC and print every responder's result as JSON lines", runRPC},
	{"sub", "print the notifications matching an object, cmd and id pattern", runSub},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns the
// exit code. Cancelling ctx stops a running command, as SIGINT does.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch name := args[0]; name {
	case "help", "-h", "-help", "--help":
		if name != "help" || len(args) == 1 || (len(args) == 2 && args[1] == "help") {
			printUsage(stdout)
			return exitOK
		}
		if len(args) > 2 {
			fmt.Fprintf(stderr, "notifier help: want one command name, got %q\n", args[1:])
			return exitUsage
		}
		c, ok := lookup(args[1])
		if !ok {
			fmt.Fprintf(stderr, "notifier help: unknown command %q\n\n", args[1])
			printUsage(stderr)
			return exitUsage
		}
		return c.run(ctx, []string{"--help"}, stdin, stdout, stderr)
	default:
		c, ok := lookup(name)
		if !ok {
			fmt.Fprintf(stderr, "notifier: unknown command %q\n\n", name)
			printUsage(stderr)
			return exitUsage
		}
		return c.run(ctx, args[1:], stdin, stdout, stderr)
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `notifier - publish/subscribe and RPC addressed by (object, id, cmd) on NATS

Every registration names an object, a cmd and an id pattern (mask, value: an id
matches when id & mask == value). A publish reaches every matching full
registration (subscribe) on the bus, plus exactly one matching slice registration,
drawn at random in proportion to its weight. An RPC does the same and returns
every responder's result.

Usage: notifier <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help   show the help of a command: notifier help <command>

Start here:
  notifier demo                  see the semantics, on an embedded NATS server
  notifier serve                 NATS on 127.0.0.1:4222 with an example service;
                                 then, in another terminal:
  notifier sub --object demo --cmd log
  notifier pub --object demo --cmd log --id 1 --json '{"hello":"world"}'
  notifier rpc --object demo --cmd echo --id 1 --json '"hi"'

Run "notifier <command> --help" for the flags of a command. Flags may be
written -flag or --flag. The commands that connect take the nats CLI's
connection flags (-s/--server, --creds, --nkey, --user, --password, --token,
--tlsca, --tlscert, --tlskey, --tlsfirst, --context), read its contexts, and
$NATS_URL; precedence flags > context > environment.

Exit status: 0 success, 1 failure (NATS unreachable, an RPC error, ...),
2 bad command line.
`)
}
