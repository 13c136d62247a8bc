package notifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/testenv"
)

// hostileBodies are msgpack messages of a few bytes whose headers claim about
// 2³² elements or bytes: msgpack v5 preallocates what a header claims, so
// decoding one of them without a bound asks for gigabytes.
var hostileBodies = map[string][]byte{
	"array32":           {0xdd, 0xff, 0xff, 0xff, 0xff},
	"map32":             {0xdf, 0xff, 0xff, 0xff, 0xff},
	"str32":             {0xdb, 0xff, 0xff, 0xff, 0xff},
	"bin32":             {0xc6, 0xff, 0xff, 0xff, 0xff},
	"ext32":             {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},
	"nested array32":    {0x91, 0x92, 0xc0, 0xdd, 0xff, 0xff, 0xff, 0xfe},
	"map of map32":      {0x81, 0xa1, 'k', 0xdf, 0x7f, 0xff, 0xff, 0xff},
	"array16 too long":  {0xdc, 0xff, 0xff, 0x01},
	"trailing bytes":    {0xa1, 'x', 0x22},
	"never-used byte":   {0xc1},
	"truncated float64": {0xcb, 0x01},
}

// decodingRecorder decodes every notification's Args into any, as a
// Subscriber would, and records what arrived.
type decodingRecorder struct {
	recorder
	decodeErrs atomic.Int64
}

func (r *decodingRecorder) Notify(object string, id int64, cmd string, args notifier.Args) {
	var v any
	if args.Decode(&v) != nil {
		r.decodeErrs.Add(1)
	}
	r.recorder.Notify(object, id, cmd, args)
}

// decodingResponder decodes its Args and answers "ok".
type decodingResponder struct{ calls atomic.Int64 }

func (d *decodingResponder) RPCCall(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
	d.calls.Add(1)
	var v any
	if err := args.Decode(&v); err != nil {
		return nil, err
	}
	return "ok", nil
}

// TestHostileMsgpack feeds every hostile body on every data subject family —
// routed publishes and RPCs on a node's subjects, the fan-out subject, and
// the gateway subjects with Content-Type application/msgpack — in this test
// process: it survives, allocates a bounded amount, delivers nothing of
// them, counts each one as undecodable and answers each RPC with an error.
func TestHostileMsgpack(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	nc := testenv.Connect(t, s.URL())
	const object, cmd = "hostile", "c"
	node, full, bcast := &decodingRecorder{}, &decodingRecorder{}, &decodingRecorder{}
	resp := &decodingResponder{}
	if err := n.Subscribe(object, notifier.Exact(1), cmd, node); err != nil {
		t.Fatal(err)
	}
	if err := n.Slice(object, notifier.Exact(1), cmd, full, 1); err != nil {
		t.Fatal(err)
	}
	if err := n.Subscribe(object, notifier.Match{}, cmd, bcast); err != nil {
		t.Fatal(err)
	}
	if err := n.RPCRegister(object, notifier.Match{}, cmd, resp); err != nil {
		t.Fatal(err)
	}
	// The fan-out subscription reaches the server before raw clients publish.
	if err := n.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	mp := nats.Header{"Content-Type": []string{notifier.ContentTypeMsgpack}}
	nodePub := fmt.Sprintf("notifier.node.%s.pub.%s.%s.1", n.Node(), object, cmd)
	nodeRPC := fmt.Sprintf("notifier.node.%s.rpc.%s.%s.1", n.Node(), object, cmd)
	fan := fmt.Sprintf("notifier.fan.%s.%s.1", object, cmd)
	gwPub := fmt.Sprintf("notifier.pub.%s.%s.1", object, cmd)
	gwRPC := fmt.Sprintf("notifier.rpc.%s.%s.1", object, cmd)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	undecodable := n.Stats().Undecodable
	sent := uint64(0)
	for name, body := range hostileBodies {
		// Routed frames: flags (full, or full and JSON-less broadcast), then the body.
		for _, m := range []*nats.Msg{
			{Subject: nodePub, Data: append([]byte{frame.FlagFull}, body...)},
			{Subject: fan, Data: append([]byte{frame.FlagBroadcast}, body...)},
			{Subject: gwPub, Header: mp, Data: body},
		} {
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		// A routed RPC: full, with a timeout of 1000 ms.
		reply, err := nc.Request(nodeRPC, append([]byte{frame.FlagFull | frame.FlagTimeout, 0xe8, 0x07}, body...), rpcWait)
		if err != nil {
			t.Fatalf("%s: routed rpc: %v", name, err)
		}
		sent++
		_, kind, rbody, err := frame.ParseReply(reply.Data)
		if err != nil || kind != frame.ReplyError || !bytes.Contains(rbody, []byte("malformed")) {
			t.Errorf("%s: routed rpc answered kind %d %q (%v), want an error reply", name, kind, rbody, err)
		}
		gw, err := nc.RequestMsg(&nats.Msg{Subject: gwRPC, Header: mp, Data: body}, rpcWait)
		if err != nil {
			t.Fatalf("%s: gateway rpc: %v", name, err)
		}
		sent++
		var r notifier.GatewayReply
		if err := json.Unmarshal(gw.Data, &r); err != nil || !strings.Contains(r.Error, "cannot decode") || len(r.Results) != 0 {
			t.Errorf("%s: gateway rpc answered %s (%v), want a decode error", name, gw.Data, err)
		}
	}
	eventually(t, deliveryTimeout, func() bool { return n.Stats().Undecodable-undecodable >= sent },
		"undecodable grows by %d, grew %d", sent, n.Stats().Undecodable-undecodable)
	// Traffic after the hostile messages still flows.
	if err := nc.Publish(gwPub, []byte(`"after"`)); err != nil {
		t.Fatal(err)
	}
	node.waitLen(t, 1, deliveryTimeout)
	bcast.waitLen(t, 1, deliveryTimeout)
	full.waitLen(t, 1, deliveryTimeout)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("the hostile messages cost %d MiB of allocations, want under 64", grew>>20)
	}
	if got := n.Stats().Undecodable - undecodable; got != sent {
		t.Errorf("Stats().Undecodable grew by %d, want %d (one per hostile message)", got, sent)
	}
	for what, r := range map[string]*decodingRecorder{"node": node, "slice": full, "broadcast": bcast} {
		if got := r.Len(); got != 1 {
			t.Errorf("%s registration: %d notifications, want only the good one", what, got)
		}
		if e := r.decodeErrs.Load(); e != 0 {
			t.Errorf("%s registration: %d undecodable Args reached Notify", what, e)
		}
	}
	if c := resp.calls.Load(); c != 0 {
		t.Errorf("the responder was called %d times with hostile arguments", c)
	}
}

// TestGarbageRouted: hostile-input case 5 (README "Hostile input"). Garbage published straight on a
// node's publish subject or the fan-out subject is refused and counted, not
// delivered as undecodable Args; bad JSON under the JSON flag too.
func TestGarbageRouted(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	nc := testenv.Connect(t, s.URL())
	const object, cmd = "garbage", "c"
	exact, all := &decodingRecorder{}, &decodingRecorder{}
	if err := n.Subscribe(object, notifier.Exact(1), cmd, exact); err != nil {
		t.Fatal(err)
	}
	if err := n.Subscribe(object, notifier.Match{}, cmd, all); err != nil {
		t.Fatal(err)
	}
	if err := n.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	nodePub := fmt.Sprintf("notifier.node.%s.pub.%s.%s.1", n.Node(), object, cmd)
	fan := fmt.Sprintf("notifier.fan.%s.%s.1", object, cmd)
	before := n.Stats().Undecodable
	bad := [][]byte{
		[]byte("garbage"),
		{frame.FlagFull, 'g', 'a', 'r', 'b', 'a', 'g', 'e'},
		{frame.FlagFull | frame.FlagJSON, '{', 'x'},
		{frame.FlagFull, 0x01, 0x02},
		{frame.FlagFull | frame.FlagSlice}, // slice id missing
	}
	for _, b := range bad {
		for _, subj := range []string{nodePub, fan} {
			if err := nc.Publish(subj, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := uint64(2 * len(bad))
	eventually(t, deliveryTimeout, func() bool { return n.Stats().Undecodable-before >= want }, "undecodable grows by %d", want)
	if err := n.Publish(object, 1, cmd, "good"); err != nil {
		t.Fatal(err)
	}
	exact.waitLen(t, 1, deliveryTimeout)
	all.waitLen(t, 1, deliveryTimeout)
	if got := n.Stats().Undecodable - before; got != want {
		t.Errorf("Undecodable grew by %d, want %d", got, want)
	}
	for what, r := range map[string]*decodingRecorder{"exact": exact, "broadcast": all} {
		if got := r.Len(); got != 1 || r.decodeErrs.Load() != 0 {
			t.Errorf("%s: %d notifications (%d undecodable), want the good one only", what, got, r.decodeErrs.Load())
		}
	}
}

// TestGatewayMsgpackTrailing: hostile-input case 4 (README "Hostile input"). A msgpack gateway body
// with bytes after its first value is refused: '"x"' is 0x22 0x78 0x22, the
// integer 34 followed by two more bytes.
func TestGatewayMsgpackTrailing(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	nc := testenv.Connect(t, s.URL())
	r := &decodingRecorder{}
	if err := n.Subscribe("demo", notifier.Match{}, "log", r); err != nil {
		t.Fatal(err)
	}
	before := n.Stats().Undecodable
	mp := nats.Header{"Content-Type": []string{notifier.ContentTypeMsgpack}}
	if err := nc.PublishMsg(&nats.Msg{Subject: "notifier.pub.demo.log.3", Header: mp, Data: []byte(`"x"`)}); err != nil {
		t.Fatal(err)
	}
	gw, err := nc.RequestMsg(&nats.Msg{Subject: "notifier.rpc.demo.log.3", Header: mp, Data: []byte{0x01, 0x02}}, rpcWait)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(gw.Data, []byte("after the value")) {
		t.Errorf("gateway rpc with trailing bytes answered %s, want an error naming them", gw.Data)
	}
	eventually(t, deliveryTimeout, func() bool { return n.Stats().Undecodable-before == 2 }, "two undecodable")
	// One good msgpack value (fixint 34) goes through.
	if err := nc.PublishMsg(&nats.Msg{Subject: "notifier.pub.demo.log.4", Header: mp, Data: []byte{0x22}}); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 1, deliveryTimeout)
	var v int
	if got := r.Notes(); len(got) != 1 || got[0].ID != 4 || got[0].Args.Decode(&v) != nil || v != 34 {
		t.Errorf("got %+v (decoded %d), want only id 4 holding 34", got, v)
	}
}

// TestGatewayErrorText: hostile-input case 7 (README "Hostile input"). Gateway error JSON keeps < and >
// as they are, and a non-numeric id is an invalid id, not an invalid name.
func TestGatewayErrorText(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	nc := testenv.Connect(t, s.URL())
	if err := n.RPCRegister("demo", notifier.Match{}, "echo", rpcConst("<b>")); err != nil {
		t.Fatal(err)
	}
	ask := func(subject, body string) (notifier.GatewayReply, []byte) {
		t.Helper()
		m, err := nc.Request(subject, []byte(body), rpcWait)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		var r notifier.GatewayReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("%s: reply %q: %v", subject, m.Data, err)
		}
		return r, m.Data
	}
	r, raw := ask("notifier.rpc.demo.echo.abc", `"hi"`)
	if !strings.Contains(r.Error, notifier.ErrInvalidID.Error()) || strings.Contains(r.Error, notifier.ErrInvalidName.Error()) {
		t.Errorf("non-numeric id: error %q, want %q", r.Error, notifier.ErrInvalidID)
	}
	for _, subject := range []string{"notifier.rpc.demo.echo", "notifier.rpc.demo.echo.1.2", "notifier.rpc.de*mo.echo.1"} {
		r, raw := ask(subject, `"hi"`)
		if !strings.Contains(r.Error, notifier.ErrInvalidName.Error()) {
			t.Errorf("%s: error %q, want %q", subject, r.Error, notifier.ErrInvalidName)
		}
		if bytes.Contains(raw, []byte(`\u003c`)) || bytes.Contains(raw, []byte(`\u003e`)) {
			t.Errorf("%s: reply escapes < or >: %s", subject, raw)
		}
	}
	if bytes.Contains(raw, []byte(`\u00`)) {
		t.Errorf("reply escapes characters: %s", raw)
	}
	// Results too: "<b>" stays "<b>".
	_, raw = ask("notifier.rpc.demo.echo.1", `"hi"`)
	if !bytes.Contains(raw, []byte(`"<b>"`)) {
		t.Errorf("result JSON %s, want the value \"<b>\" unescaped", raw)
	}
	// A publish with a bad id is refused and counted too.
	before := n.Stats().Undecodable
	if err := nc.Publish("notifier.pub.demo.echo.x1", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, deliveryTimeout, func() bool { return n.Stats().Undecodable == before+1 }, "the bad id counted")
	if !errors.Is(fmt.Errorf("wrap: %w", notifier.ErrInvalidID), notifier.ErrInvalidID) {
		t.Fatal("ErrInvalidID does not unwrap")
	}
}

// TestStatsJSONKeys: a hostile-input case. Stats as JSON (what `nats micro
// stats` shows) uses snake_case keys only.
func TestStatsJSONKeys(t *testing.T) {
	b, err := json.Marshal(notifier.Stats{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"published", "delivered", "dropped", "panics", "undecodable", "forged", "rpc_served", "rpc_errors", "peers"}
	if len(m) != len(want) {
		t.Errorf("Stats JSON %s, want the keys %v", b, want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("Stats JSON %s lacks %q", b, k)
		}
	}
	for k := range m {
		if strings.ToLower(k) != k {
			t.Errorf("Stats JSON key %q is not snake_case", k)
		}
	}
}

// TestHostileDirectoryStats: hostile msgpack on the directory's announcement
// subject, in a live node's name and in its own, leaves the Notifier working
// and shows in its Stats (Undecodable; Forged for a message that names
// another node than its subject).
func TestHostileDirectoryStats(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	raw, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	subj := bus.Subjects{Prefix: "notifier"}
	before := a.Stats().Undecodable
	sent := 0
	for _, body := range hostileBodies {
		if err := raw.Publish(subj.Ann(b.Node()), body); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, deliveryTimeout, func() bool { return a.Stats().Undecodable >= before+uint64(sent) },
		"hostile directory messages counted as undecodable")
	rec := &recorder{}
	if err := b.Subscribe("obj", notifier.Exact(1), "cmd", rec); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("obj", 1, "cmd", "still routed"); err != nil {
		t.Fatal(err)
	}
	rec.waitLen(t, 1, deliveryTimeout)
}
