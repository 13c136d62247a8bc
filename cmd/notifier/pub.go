package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

const pubDoc = `Publishes a notification to (object, id, cmd): every matching full registration
on the bus receives it, and exactly one matching slice registration, drawn by
weight. Publishing with nothing registered is not an error.

The arguments are given as JSON (--json, or --json-file for a file, "-" for
stdin: any size up to the server's max payload) and sent as msgpack, as the Go
API sends them (integers stay integers). Without them the arguments are nil.

Examples:
  notifier pub --object demo --cmd log --id 1 --json '{"hello":"world"}'
  notifier pub --object demo --cmd work --id 7 --count 100
  notifier pub --object demo --cmd log --id 1 --json-file big.json
  produce-json | notifier pub --object demo --cmd log --id 1 --json -
  nats pub notifier.pub.demo.log.1 '{"hello":"world"}'   # the same with the nats CLI
`

func runPub(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := newFlags("pub", "--object O --cmd C --id N [--json J] [flags]", pubDoc)
	conn := addConnFlags(f)
	target := addTargetFlags(f, "publish to", "arguments as `JSON`, e.g. '{\"a\":1}' or '\"text\"' (default: nil)")
	count := f.Int("count", 1, "publish `N` times")
	if code, ok := f.parse(args, stdout, stderr); !ok {
		return code
	}
	v, err := target.args(f, stdin)
	if err != nil {
		return f.fail(stderr, "%v", err)
	}
	if *count < 1 {
		return f.fail(stderr, "--count %d: want at least 1", *count)
	}
	if err := conn.check(); err != nil {
		return f.fail(stderr, "%v", err)
	}

	n, err := conn.connect("pub", stderr, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return exitFail
	}
	code := exitOK
	sent := 0
	for range *count {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "notifier pub: interrupted\n")
			code = exitFail
			break
		}
		if err := n.Publish(*target.object, target.id.v, *target.cmd, v); err != nil {
			fmt.Fprintf(stderr, "notifier pub: %v\n", err)
			code = exitFail
			break
		}
		sent++
	}
	// Close flushes: the publishes have left this process when it returns.
	if closeNotifier("pub", n, stderr) != nil {
		code = exitFail
	}
	if sent > 0 {
		fmt.Fprintf(stdout, "published %d notification(s): object=%s cmd=%s id=%d\n", sent, *target.object, *target.cmd, target.id.v)
	}
	return code
}
