package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/natsnotifier/notifier"
)

const rpcDoc = `Calls (object, id, cmd): every matching full RPC registration on the bus answers,
plus exactly one matching RPC slice drawn by weight. Prints one JSON line per
answer, in arrival order:
  {"value":<the responder's return value>}
  {"error":{"code":<code>,"message":"..."}}     the responder failed
Error codes: 1 handler error, 2 handler panic, 3 result not encodable,
4 arguments not decodable, 5 internal.

Exit status is 1 when the call fails (no responders, timeout: the answers that
arrived are printed first) or when any responder failed. The arguments are
JSON: --json, or --json-file for a file, "-" for stdin.

Examples:
  notifier rpc --object demo --cmd echo --id 1 --json '"hi"'
  notifier rpc --object demo --cmd add --id 1 --json '[2,3]' --timeout 1s
  nats req notifier.rpc.demo.echo.1 '"hi"'   # the same with the nats CLI
`

func runRPC(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := newFlags("rpc", "--object O --cmd C --id N [--json J] [flags]", rpcDoc)
	conn := addConnFlags(f)
	target := addTargetFlags(f, "call", "arguments as `JSON` (default: nil)")
	timeout := f.Duration("timeout", notifier.DefaultRPCTimeout, "how long to wait for the answers")
	if code, ok := f.parse(args, stdout, stderr); !ok {
		return code
	}
	v, err := target.args(f, stdin)
	if err != nil {
		return f.fail(stderr, "%v", err)
	}
	if *timeout <= 0 {
		return f.fail(stderr, "--timeout %v: want a positive duration", *timeout)
	}
	if err := conn.check(); err != nil {
		return f.fail(stderr, "%v", err)
	}

	n, err := conn.connect("rpc", stderr, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return exitFail
	}
	defer closeNotifier("rpc", n, stderr)
	callCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, err := n.RPC(callCtx, *target.object, target.id.v, *target.cmd, v)
	failed := 0
	for _, r := range results {
		line, rerr := resultJSON(r)
		if rerr != nil {
			line = []byte(fmt.Sprintf(`{"error":{"code":%d,"message":%q}}`, notifier.CodeInternal, rerr.Error()))
		}
		if r.Err != nil || rerr != nil {
			failed++
		}
		fmt.Fprintf(stdout, "%s\n", line)
	}
	switch {
	case errors.Is(err, notifier.ErrNoResponders):
		fmt.Fprintf(stderr, "notifier rpc: %v: nothing on the bus is registered for object=%s cmd=%s id=%d\n", err, *target.object, *target.cmd, target.id.v)
		return exitFail
	case errors.Is(err, notifier.ErrTimeout):
		fmt.Fprintf(stderr, "notifier rpc: %v after %v (%d answer(s) arrived)\n", err, *timeout, len(results))
		return exitFail
	case err != nil:
		fmt.Fprintf(stderr, "notifier rpc: %v\n", err)
		return exitFail
	case failed > 0:
		fmt.Fprintf(stderr, "notifier rpc: %d of %d responder(s) failed\n", failed, len(results))
		return exitFail
	}
	return exitOK
}

// resultJSON renders one result as the gateway does: {"value":...} or
// {"error":{"code":...,"message":...}}.
func resultJSON(r notifier.Result) ([]byte, error) {
	var g notifier.GatewayResult
	var re *notifier.RemoteError
	switch {
	case errors.As(r.Err, &re):
		g.Error = re
	case r.Err != nil:
		g.Error = &notifier.RemoteError{Code: notifier.CodeInternal, Message: r.Err.Error()}
	default:
		g.Value = &r.Value
	}
	return json.Marshal(&g)
}
