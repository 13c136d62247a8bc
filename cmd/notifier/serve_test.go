package main

import (
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// startServe runs "serve" with args and waits until its service is up.
func startServe(t *testing.T, args ...string) *proc {
	t.Helper()
	p := start(t, append([]string{"serve"}, args...)...)
	p.waitFor(t, p.stdout, "Ctrl-C to stop.")
	return p
}

// stopServe interrupts serve and checks that it stops cleanly.
func stopServe(t *testing.T, p *proc) {
	t.Helper()
	p.cancel()
	if code := p.wait(t); code != exitOK {
		t.Fatalf("serve: exit %d\nstderr:\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stdout.String(), "notifier serve: stopping") {
		t.Errorf("serve did not say it stops:\n%s", p.stdout)
	}
}

// rpcLines parses rpc's output: one JSON object per line.
func rpcLines(t *testing.T, stdout string) []notifier.GatewayResult {
	t.Helper()
	var out []notifier.GatewayResult
	for line := range strings.Lines(stdout) {
		var r notifier.GatewayResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("rpc line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// TestServeAndRPC: the example service of serve, joined to an existing
// server with --url, answers rpc; pub reaches its log.
func TestServeAndRPC(t *testing.T) {
	url := testenv.Run(t).URL()
	serve := startServe(t, "--url", url)
	for _, want := range []string{
		"notifier.pub.demo.log.<id>",
		"notifier.rpc.demo.echo.<id>",
		"nats -s " + url + ` req notifier.rpc.demo.echo.1 '"hi"'`,
		"notifier rpc --url " + url + " --object demo --cmd whoami --id 1",
	} {
		if !strings.Contains(serve.stdout.String(), want) {
			t.Errorf("serve's help does not show %q:\n%s", want, serve.stdout)
		}
	}
	rpc := func(cmd, args string) (int, []notifier.GatewayResult, string) {
		t.Helper()
		code, stdout, stderr := runCmd(t, "rpc", "--url", url, "--object", "demo", "--cmd", cmd, "--id", "1", "--json", args)
		return code, rpcLines(t, stdout), stderr
	}

	code, results, stderr := rpc("echo", `{"a":[1,2.5,"x"]}`)
	if code != exitOK || len(results) != 1 || results[0].Value == nil {
		t.Fatalf("echo: exit %d, %+v\nstderr:\n%s", code, results, stderr)
	}
	var echoed map[string]any
	if err := results[0].Value.Decode(&echoed); err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(echoed); string(got) != `{"a":[1,2.5,"x"]}` {
		t.Errorf("echo returned %s", got)
	}

	code, results, stderr = rpc("add", "[2,3]")
	var sum float64
	if code != exitOK || len(results) != 1 || results[0].Value == nil || results[0].Value.Decode(&sum) != nil || sum != 5 {
		t.Errorf("add [2,3]: exit %d, %+v, sum %v\nstderr:\n%s", code, results, sum, stderr)
	}

	code, results, _ = rpc("fail", "")
	if code != exitFail || len(results) != 1 || results[0].Error == nil || results[0].Error.Code != notifier.CodeHandler {
		t.Errorf("fail: exit %d, %+v; want exit 1 and a handler error", code, results)
	}

	code, results, stderr = rpc("nothing", "")
	if code != exitFail || len(results) != 0 || !strings.Contains(stderr, "no responders") {
		t.Errorf("nothing registered: exit %d, %+v\nstderr:\n%s", code, results, stderr)
	}

	code, stdout, stderr := runCmd(t, "pub", "--url", url, "--object", "demo", "--cmd", "log", "--id", "42", "--json", `{"hello":"world"}`)
	if code != exitOK {
		t.Fatalf("pub: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	serve.waitFor(t, serve.stderr, `msg=notification object=demo id=42 cmd=log args="{\"hello\":\"world\"}"`)
	stopServe(t, serve)
}

// slowResponder answers when release is closed.
type slowResponder struct{ release chan struct{} }

func (r *slowResponder) RPCCall(context.Context, string, int64, string, notifier.Args) (any, error) {
	<-r.release
	return "slow", nil
}

// fastResponder answers at once.
type fastResponder struct{}

func (fastResponder) RPCCall(context.Context, string, int64, string, notifier.Args) (any, error) {
	return "fast", nil
}

// TestRPCTimeout: rpc prints the answers that arrived before --timeout and
// exits 1.
func TestRPCTimeout(t *testing.T) {
	url := testenv.Run(t).URL()
	n, err := notifier.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// Workaround, as in connect: directory.Join does not flush its member-list
	// subscription, so the rpc process could miss this Notifier.
	if err := n.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	slow := &slowResponder{release: make(chan struct{})}
	defer close(slow.release) // before Close, which waits for the handler
	if err := n.RPCRegister("svc", notifier.Match{}, "q", slow); err != nil {
		t.Fatal(err)
	}
	if err := n.RPCRegister("svc", notifier.Match{}, "q", &fastResponder{}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "rpc", "--url", url, "--object", "svc", "--cmd", "q", "--id", "1", "--timeout", "300ms")
	if code != exitFail || stdout != "{\"value\":\"fast\"}\n" || !strings.Contains(stderr, "notifier rpc: notifier: timeout after 300ms") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// TestServeEmbedded: serve runs its own NATS server; the other commands
// reach it.
func TestServeEmbedded(t *testing.T) {
	serve := startServe(t, "--port", "-1")
	m := regexp.MustCompile(`NATS embedded, listening on (nats://127\.0\.0\.1:\d+)\n`).FindStringSubmatch(serve.stdout.String())
	if m == nil {
		t.Fatalf("serve does not say where it listens:\n%s", serve.stdout)
	}
	code, stdout, stderr := runCmd(t, "rpc", "--url", m[1], "--object", "demo", "--cmd", "whoami", "--id", "1")
	results := rpcLines(t, stdout)
	var who map[string]string
	if code != exitOK || len(results) != 1 || results[0].Value == nil || results[0].Value.Decode(&who) != nil || who["node"] == "" {
		t.Errorf("whoami: exit %d, %+v\nstderr:\n%s", code, results, stderr)
	}
	stopServe(t, serve)
}

// TestServePortInUse: serve says clearly that its port is taken.
func TestServePortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	code, stdout, stderr := runCmd(t, "serve", "--port", strings.TrimPrefix(l.Addr().String(), "127.0.0.1:"))
	if code != exitFail || stdout != "" || !strings.Contains(stderr, "notifier serve: cannot listen on 127.0.0.1:") {
		t.Errorf("port %d in use: exit %d\nstdout:\n%s\nstderr:\n%s", port, code, stdout, stderr)
	}
}
