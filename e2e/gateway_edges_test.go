package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/natsnotifier/notifier"
)

// natsCLIStdin runs the CLI with stdin and returns its stdout, failing t if
// it exits with an error.
func natsCLIStdin(t testing.TB, url string, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := cliCommand(ctx, t, url, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("nats %s: %v (ctx: %v)\nstdout:\n%.2000s\nstderr:\n%.2000s", strings.Join(args, " "), err, ctx.Err(), stdout.String(), stderr.String())
	}
	return stdout.String()
}

// argsEchoResponder answers its arguments.
type argsEchoResponder struct{}

func (*argsEchoResponder) RPCCall(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
	return args, nil
}

// jsonObject is a JSON object {"name":"yyy..."} of exactly size bytes.
func jsonObject(size int) []byte { return []byte(`{"name":"` + strings.Repeat("y", size-11) + `"}`) }

// TestCLIGatewayEdges: the hostile-input gateway cases with the real nats CLI.
func TestCLIGatewayEdges(t *testing.T) { forEachServer(t, testCLIGatewayEdges) }

func testCLIGatewayEdges(t *testing.T, url string) {
	a, b := connect(t, url, 1), connect(t, url, 2)
	sub := &recorder{}
	must(t, a.Subscribe("demo", notifier.Match{}, "log", sub))
	must(t, b.RPCRegister("demo", notifier.Match{}, "echo", &argsEchoResponder{}))
	max := int(a.Conn().MaxPayload())
	sum := func(f func(notifier.Stats) uint64) uint64 { return f(a.Stats()) + f(b.Stats()) }
	dropped := func(s notifier.Stats) uint64 { return s.Dropped }
	undecodable := func(s notifier.Stats) uint64 { return s.Undecodable }
	rpcErrors := func(s notifier.Stats) uint64 { return s.RPCErrors }

	t.Run("2 publish of exactly max payload", func(t *testing.T) {
		before := sum(dropped)
		natsCLIStdin(t, url, jsonObject(max), "pub", "--force-stdin", "notifier.pub.demo.log.1")
		eventually(t, gatewayTimeout, func() bool { return sum(dropped) == before+1 }, func() string {
			return fmt.Sprintf("Dropped went from %d to %d, want +1: the refused publish must be counted", before, sum(dropped))
		})
		natsCLIStdin(t, url, jsonObject(max-64), "pub", "--force-stdin", "notifier.pub.demo.log.2")
		eventually(t, gatewayTimeout, func() bool { return sub.count() == 1 }, func() string {
			return fmt.Sprintf("%d notifications, want the one that fits", sub.count())
		})
	})

	t.Run("3 rpc reply over max payload", func(t *testing.T) {
		before := sum(rpcErrors)
		args := append([]string{"req", "--raw", "--timeout", "10s", "--force-stdin"}, "notifier.rpc.demo.echo.1")
		out := natsCLIStdin(t, url, jsonObject(max-2-30), args...)
		var r cliReply
		if err := json.Unmarshal([]byte(out), &r); err != nil || !strings.Contains(r.Error, "payload too large") || len(r.Results) != 0 {
			t.Errorf("reply %.300s (%v), want an error naming the payload as too large", out, err)
		}
		if got := sum(rpcErrors) - before; got != 1 {
			t.Errorf("RPCErrors grew by %d, want 1", got)
		}
	})

	t.Run("4 msgpack with trailing bytes", func(t *testing.T) {
		before, delivered := sum(undecodable), sub.count()
		natsCLI(t, url, "pub", "--no-templates", "-H", "Content-Type:"+notifier.ContentTypeMsgpack, "notifier.pub.demo.log.3", `"x"`)
		eventually(t, gatewayTimeout, func() bool { return sum(undecodable) == before+1 }, func() string {
			return fmt.Sprintf("Undecodable went from %d to %d, want +1", before, sum(undecodable))
		})
		// A good publish after it is the only one delivered.
		natsCLI(t, url, "pub", "--no-templates", "notifier.pub.demo.log.4", `{"n":4}`)
		eventually(t, gatewayTimeout, func() bool { return sub.count() == delivered+1 }, func() string {
			return fmt.Sprintf("%d notifications, want %d", sub.count(), delivered+1)
		})
		if _, _, addrs, _ := sub.snapshot(); addrs[len(addrs)-1] != "demo.log.4" {
			t.Errorf("delivered %v, want demo.log.4 last and demo.log.3 never", addrs)
		}
	})

	t.Run("7 invalid id and unescaped text", func(t *testing.T) {
		out := natsCLI(t, url, "req", "--raw", "--no-templates", "--timeout", "10s", "notifier.rpc.demo.echo.abc", `"hi"`)
		if !strings.Contains(out, "invalid id") || strings.Contains(out, "invalid name") {
			t.Errorf("non-numeric id: %s, want an invalid id error", out)
		}
		out = natsCLI(t, url, "req", "--raw", "--no-templates", "--timeout", "10s", "notifier.rpc.demo.echo", `"hi"`)
		if !strings.Contains(out, "<prefix>") || strings.Contains(out, `\u003c`) {
			t.Errorf("bad subject: %s, want <prefix> unescaped", out)
		}
	})
}
