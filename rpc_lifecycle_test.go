package notifier_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// --- §5: lifecycle ----------------------------------------------------------------

func TestRPCCluster(t *testing.T) {
	servers := testenv.RunCluster(t, 3)
	a := connect(t, servers[0].URL())
	owners := []*notifier.Notifier{connect(t, servers[1].URL()), connect(t, servers[2].URL())}
	// Let the three, connected at the same moment, know each other first:
	// joining races with route interest (see TestRPCClusterFreshConnect).
	// Each one reaching the others' probes shows they do.
	all := append([]*notifier.Notifier{a}, owners...)
	probes := make([]*rpcFn, len(all))
	for i, n := range all {
		probes[i] = rpcConst("probe")
		must(t, n.RPCRegister("clu", notifier.Match{}, "probe", probes[i]))
	}
	for _, n := range all {
		eventually(t, rpcWait, func() bool {
			res, err := n.RPC(rpcCtx(t, rpcWait), "clu", 1, "probe", nil)
			return err == nil && len(res) == len(all)
		})
	}
	for i, n := range all {
		must(t, n.RPCUnregisterAll(probes[i]))
	}

	for i := range 30 {
		owner := owners[i%2]
		r := rpcConst(int64(i))
		if i%3 == 0 {
			must(t, owner.RPCSlice("clu", notifier.Exact(int64(i)), "q", r, 1))
		} else {
			must(t, owner.RPCRegister("clu", notifier.Exact(int64(i)), "q", r))
		}
		// Right after the registration returned, on another server.
		res, err := a.RPC(rpcCtx(t, rpcWait), "clu", int64(i), "q", nil)
		if err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
		var v int64
		if len(res) != 1 || res[0].Decode(&v) != nil || v != int64(i) {
			t.Fatalf("registration %d: results %v", i, res)
		}
		// Right after the unregistration returned: nobody.
		must(t, owner.RPCUnregister("clu", notifier.Exact(int64(i)), "q", r))
		if _, err := a.RPC(rpcCtx(t, rpcWait), "clu", int64(i), "q", nil); !errors.Is(err, notifier.ErrNoResponders) {
			t.Fatalf("after unregistration %d: %v, want ErrNoResponders", i, err)
		}
		if n := r.calls.Load(); n != 1 {
			t.Fatalf("registration %d called %d times, want 1", i, n)
		}
	}
}

// TestRPCClusterFreshConnect: a Notifier whose Connect returned is on the bus
// (the package doc: registration calls return once the bus knows them), so a registration made right afterwards by a Notifier on another
// server must reach it once RPCRegister returns.
func TestRPCClusterFreshConnect(t *testing.T) {
	servers := testenv.RunCluster(t, 3)
	for round := range 10 {
		a := connect(t, servers[round%3].URL())
		b := connect(t, servers[(round+1)%3].URL())
		must(t, b.RPCRegister("fresh", notifier.Match{}, "q", rpcConst("b")))
		res, err := a.RPC(rpcCtx(t, rpcWait), "fresh", 1, "q", nil)
		if err != nil {
			t.Fatalf("round %d: RPC right after Connect and RPCRegister on another server: %v", round, err)
		}
		if got := rpcStrings(t, res); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("round %d: %q, want [b]", round, got)
		}
		must(t, a.Close())
		must(t, b.Close())
	}
}

func TestRPCUnregister(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	r := rpcConst("r")
	keep := rpcConst("keep")
	must(t, b.RPCRegister("un", notifier.Exact(1), "q", r))
	must(t, b.RPCRegister("un", notifier.Match{}, "q", r))
	must(t, b.RPCSlice("un", notifier.Match{}, "s", r, 1))
	must(t, b.RPCRegister("un", notifier.Match{}, "k", keep))

	count := func(cmd string) int {
		t.Helper()
		res, err := a.RPC(ctx, "un", 1, cmd, nil)
		if errors.Is(err, notifier.ErrNoResponders) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return len(res)
	}
	if n := count("q"); n != 2 {
		t.Fatalf("%d results, want 2", n)
	}
	must(t, b.RPCUnregister("un", notifier.Exact(1), "q", r))
	if n := count("q"); n != 1 {
		t.Fatalf("after RPCUnregister of one pattern: %d results, want 1", n)
	}

	// Unknown registrations: ErrNotRegistered, nothing changes.
	for _, tc := range []struct {
		id   notifier.Match
		cmd  string
		dest notifier.Responder
	}{
		{notifier.Exact(1), "q", r},   // already gone
		{notifier.Exact(2), "q", r},   // other pattern
		{notifier.Match{}, "x", r},    // other cmd
		{notifier.Match{}, "q", keep}, // other destination
	} {
		if err := b.RPCUnregister("un", tc.id, tc.cmd, tc.dest); !errors.Is(err, notifier.ErrNotRegistered) {
			t.Errorf("RPCUnregister(%+v, %q): %v, want ErrNotRegistered", tc.id, tc.cmd, err)
		}
	}
	if n := count("q"); n != 1 {
		t.Fatalf("after failed unregistrations: %d results, want 1", n)
	}
	if n := count("s"); n != 1 {
		t.Fatalf("slice: %d results, want 1", n)
	}

	// RPCUnregisterAll removes full and slice registrations of r only.
	calls := r.calls.Load()
	must(t, b.RPCUnregisterAll(r))
	if n := count("q") + count("s"); n != 0 {
		t.Fatalf("after RPCUnregisterAll: %d results", n)
	}
	if n := r.calls.Load(); n != calls {
		t.Fatalf("unregistered responder called %d more times", n-calls)
	}
	if n := count("k"); n != 1 {
		t.Fatalf("other destination: %d results, want 1", n)
	}
	if err := b.RPCUnregisterAll(r); err != nil {
		t.Fatalf("RPCUnregisterAll again: %v, want nil", err)
	}
	if err := b.RPCUnregisterAll(rpcConst("never")); err != nil {
		t.Fatalf("RPCUnregisterAll of an unknown destination: %v, want nil", err)
	}

	// Notification registrations are not RPC registrations.
	both := &rpcBoth{}
	must(t, b.Subscribe("un", notifier.Match{}, "n", both))
	if err := b.RPCUnregister("un", notifier.Match{}, "n", both); !errors.Is(err, notifier.ErrNotRegistered) {
		t.Fatalf("RPCUnregister of a Subscribe: %v, want ErrNotRegistered", err)
	}
	must(t, b.RPCUnregisterAll(both))
	must(t, a.Publish("un", 1, "n", nil))
	eventually(t, rpcWait, func() bool { return both.notified.Load() == 1 })
}

// --- §7: the gateway for other NATS clients ------------------------------------

func TestRPCGateway(t *testing.T) {
	srv := testenv.Run(t)
	b := connect(t, srv.URL())
	echo := &rpcFn{fn: func(_ context.Context, _ int64, args notifier.Args) (any, error) {
		var s string
		if err := args.Decode(&s); err != nil {
			return nil, err
		}
		return "echo:" + s, nil
	}}
	must(t, b.RPCRegister("gw", notifier.Match{}, "say", echo))
	must(t, b.RPCRegister("gw", notifier.Exact(7), "say", &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) {
		return nil, errors.New("nope")
	}}))
	nc := testenv.Connect(t, srv.URL())

	request := func(msg *nats.Msg) (notifier.GatewayReply, map[string]json.RawMessage) {
		t.Helper()
		m, err := nc.RequestMsg(msg, rpcWait)
		if err != nil {
			t.Fatalf("request %s: %v", msg.Subject, err)
		}
		var reply notifier.GatewayReply
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(m.Data, &reply); err != nil {
			t.Fatalf("reply %q is not a GatewayReply: %v", m.Data, err)
		}
		if err := json.Unmarshal(m.Data, &raw); err != nil {
			t.Fatalf("reply %q is not a JSON object: %v", m.Data, err)
		}
		return reply, raw
	}

	reply, raw := request(&nats.Msg{Subject: "notifier.rpc.gw.say.7", Data: []byte(`"json"`)})
	if reply.Error != "" || len(reply.Results) != 2 {
		t.Fatalf("reply %+v, want two results and no error", reply)
	}
	if _, ok := raw["results"]; !ok {
		t.Fatalf("reply %v has no \"results\"", raw)
	}
	var values []string
	var remote []*notifier.RemoteError
	for _, r := range reply.Results {
		switch {
		case r.Error != nil:
			remote = append(remote, r.Error)
		case r.Value != nil:
			var s string
			if err := r.Value.Decode(&s); err != nil {
				t.Fatal(err)
			}
			values = append(values, s)
		}
	}
	if !slices.Equal(values, []string{"echo:json"}) || len(remote) != 1 || remote[0].Code != notifier.CodeHandler || remote[0].Message != "nope" {
		t.Fatalf("values %q, errors %v; want [echo:json] and one handler error", values, remote)
	}

	// msgpack with its Content-Type.
	body, err := msgpack.Marshal("mp")
	must(t, err)
	mp := &nats.Msg{Subject: "notifier.rpc.gw.say.8", Data: body, Header: nats.Header{}}
	mp.Header.Set("Content-Type", notifier.ContentTypeMsgpack)
	reply, _ = request(mp)
	if reply.Error != "" || len(reply.Results) != 1 || reply.Results[0].Value == nil {
		t.Fatalf("msgpack request: reply %+v", reply)
	}
	var s string
	if err := reply.Results[0].Value.Decode(&s); err != nil || s != "echo:mp" {
		t.Fatalf("msgpack request: %q, %v", s, err)
	}

	// Bad JSON: an error reply, no results, and no handler called.
	calls := echo.calls.Load()
	reply, _ = request(&nats.Msg{Subject: "notifier.rpc.gw.say.8", Data: []byte(`{not json`)})
	if reply.Error == "" || len(reply.Results) != 0 {
		t.Fatalf("bad JSON: reply %+v, want an error and no results", reply)
	}
	if echo.calls.Load() != calls {
		t.Fatalf("a handler was called with undecodable arguments")
	}

	// Nobody registered.
	reply, _ = request(&nats.Msg{Subject: "notifier.rpc.gw.nobody.1", Data: []byte(`1`)})
	if reply.Error == "" || len(reply.Results) != 0 {
		t.Fatalf("no responders: reply %+v, want an error and no results", reply)
	}
}
