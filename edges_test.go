package notifier_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/testenv"
)

// blockingSub blocks its first Notify until release is closed, then records.
type blockingSub struct {
	recorder
	entered chan struct{} // closed when the first Notify starts
	release chan struct{}
	first   atomic.Bool
}

func newBlockingSub(t *testing.T) *blockingSub {
	b := &blockingSub{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
	})
	return b
}

func (b *blockingSub) Notify(object string, id int64, cmd string, args notifier.Args) {
	if b.first.CompareAndSwap(false, true) {
		close(b.entered)
		<-b.release
	}
	b.recorder.Notify(object, id, cmd, args)
}

// TestUnsubscribeQueuedSlice: hostile-input case 1 (README "Hostile input"). Unsubscribe of a slice
// registration with notifications queued behind its slow Subscriber draws
// each of them again, once, among the remaining matching slices (here a
// weight-0 standby on another Notifier): none is lost, none is delivered twice.
func TestUnsubscribeQueuedSlice(t *testing.T) {
	s := testenv.Run(t)
	pub, a, b := connect(t, s.URL()), connect(t, s.URL()), connect(t, s.URL())
	const object, cmd, count = "unsq", "c", 50
	slow, standby := newBlockingSub(t), &recorder{}
	if err := a.Slice(object, notifier.Match{}, cmd, slow, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{}, cmd, standby, 0); err != nil {
		t.Fatal(err)
	}
	dropped := a.Stats().Dropped + b.Stats().Dropped
	for i := range int64(count) {
		if err := pub.Publish(object, i, cmd, i); err != nil {
			t.Fatal(err)
		}
	}
	<-slow.entered
	pubFlush(t, pub, a) // every publish is queued on a, behind the blocked Notify
	if err := a.Unsubscribe(object, notifier.Match{}, cmd, slow); err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	eventually(t, deliveryTimeout, func() bool { return slow.Len()+standby.Len() >= count },
		"slow %d + standby %d of %d", slow.Len(), standby.Len(), count)
	pubFlush(t, pub, b)
	pubFlush(t, a, b)
	if got := slow.Len(); got != 1 {
		t.Errorf("the unsubscribed slice got %d, want only the one it was delivering", got)
	}
	seen := map[int64]int{}
	for _, id := range append(slow.IDs(), standby.IDs()...) {
		seen[id]++
	}
	for i := range int64(count) {
		if seen[i] != 1 {
			t.Errorf("notification %d delivered %d times, want once", i, seen[i])
		}
	}
	if d := a.Stats().Dropped + b.Stats().Dropped - dropped; d != 0 {
		t.Errorf("Dropped grew by %d, want 0", d)
	}
}

// TestUnsubscribeQueuedFull: hostile-input case 1 (README "Hostile input"). A full registration's
// queued notifications, discarded by Unsubscribe, are counted as dropped.
func TestUnsubscribeQueuedFull(t *testing.T) {
	s := testenv.Run(t)
	pub, a := connect(t, s.URL()), connect(t, s.URL())
	const object, cmd, count = "unsqf", "c", 50
	slow := newBlockingSub(t)
	if err := a.Subscribe(object, notifier.Exact(7), cmd, slow); err != nil {
		t.Fatal(err)
	}
	dropped := a.Stats().Dropped
	for range count {
		if err := pub.Publish(object, 7, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	<-slow.entered
	pubFlush(t, pub, a)
	if err := a.Unsubscribe(object, notifier.Exact(7), cmd, slow); err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	// The released call records its notification after the queue is
	// dropped, so wait for both before judging the counts.
	eventually(t, deliveryTimeout, func() bool { return slow.Len() >= 1 && a.Stats().Dropped-dropped >= count-1 },
		"the first delivered and dropped grown by %d", count-1)
	if got, d := slow.Len(), a.Stats().Dropped-dropped; got != 1 || d != count-1 {
		t.Errorf("delivered %d, dropped %d; want 1 and %d", got, d, count-1)
	}
}

// TestGatewayMaxPayload: hostile-input case 2 (README "Hostile input"). A gateway publish of exactly
// the server's max payload cannot be routed with its header: it is refused
// as a whole, counted in Dropped, and a request gets an error reply; one
// that fits with the header is delivered.
func TestGatewayMaxPayload(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	nc := testenv.Connect(t, s.URL())
	r := &recorder{}
	if err := n.Subscribe("demo", notifier.Match{}, "log", r); err != nil {
		t.Fatal(err)
	}
	max := int(nc.MaxPayload())
	jsonString := func(size int) []byte { return []byte(`"` + strings.Repeat("y", size-2) + `"`) }
	before := n.Stats()
	if err := nc.Publish("notifier.pub.demo.log.1", jsonString(max)); err != nil {
		t.Fatal(err)
	}
	eventually(t, deliveryTimeout, func() bool { return n.Stats().Dropped == before.Dropped+1 }, "the refused publish counted as dropped")
	if err := nc.Publish("notifier.pub.demo.log.2", jsonString(max-64)); err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request("notifier.pub.demo.log.3", jsonString(max), rpcWait)
	if err != nil {
		t.Fatalf("request of max payload on the publish subject: %v, want an error reply", err)
	}
	var g notifier.GatewayReply
	if json.Unmarshal(m.Data, &g) != nil || !strings.Contains(g.Error, notifier.ErrPayloadTooLarge.Error()) {
		t.Errorf("reply %.200s, want %q", m.Data, notifier.ErrPayloadTooLarge)
	}
	fits := max - frame.FrameHeaderLen
	if err := nc.Publish("notifier.pub.demo.log.4", jsonString(fits)); err != nil {
		t.Fatal(err)
	}
	eventually(t, deliveryTimeout, func() bool { return r.Has(4) }, "the publish of %d bytes", fits)
	if ids := r.IDs(); len(ids) != 2 || ids[0] != 2 || ids[1] != 4 {
		t.Errorf("delivered ids %v, want [2 4]", ids)
	}
	if got := n.Stats().Published - before.Published; got != 2 {
		t.Errorf("Published grew by %d, want 2", got)
	}
}

// TestGatewayReplyTooLarge: hostile-input case 3 (README "Hostile input"). A gateway RPC whose JSON
// reply wrapper pushes the reply over max payload gets an error reply, well
// before its timeout.
func TestGatewayReplyTooLarge(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL(), notifier.WithRPCTimeout(20*time.Second))
	nc := testenv.Connect(t, s.URL())
	echo := &rpcFn{fn: func(_ context.Context, _ int64, args notifier.Args) (any, error) { return args, nil }}
	if err := n.RPCRegister("demo", notifier.Match{}, "echo", echo); err != nil {
		t.Fatal(err)
	}
	max := int(nc.MaxPayload())
	body := []byte(`"` + strings.Repeat("q", max-2-30-2) + `"`)
	errs := n.Stats().RPCErrors
	m, err := nc.Request("notifier.rpc.demo.echo.1", body, 10*time.Second)
	if err != nil {
		t.Fatalf("gateway rpc with a reply over max payload: %v, want an error reply", err)
	}
	var g notifier.GatewayReply
	if err := json.Unmarshal(m.Data, &g); err != nil || !strings.Contains(g.Error, notifier.ErrPayloadTooLarge.Error()) {
		t.Errorf("reply %.300s (%v), want %q", m.Data, err, notifier.ErrPayloadTooLarge)
	}
	if echo.calls.Load() != 1 || n.Stats().RPCErrors != errs+1 {
		t.Errorf("calls %d, RPCErrors +%d; want 1 and +1", echo.calls.Load(), n.Stats().RPCErrors-errs)
	}
}

// panicEncoder's msgpack encoding panics.
type panicEncoder struct{}

func (panicEncoder) MarshalMsgpack() ([]byte, error) { panic("encoder") }

// TestRPCResponderFailures: a failure on the responder's side — a result
// over max payload, an error message over it, an encoder that fails or
// panics — reaches the caller as an error result before its deadline.
func TestRPCResponderFailures(t *testing.T) {
	s := testenv.Run(t)
	caller, resp := connect(t, s.URL()), connect(t, s.URL())
	max := int(caller.Conn().MaxPayload())
	for name, fn := range map[string]func() (any, error){
		"result over max payload":   func() (any, error) { return make([]byte, max), nil },
		"error over max payload":    func() (any, error) { return nil, errors.New(strings.Repeat("e", max)) },
		"unencodable result":        func() (any, error) { return make(chan int), nil },
		"encoder panics":            func() (any, error) { return panicEncoder{}, nil },
		"result just under the max": func() (any, error) { return make([]byte, max-64), nil },
	} {
		cmd := strings.ReplaceAll(name, " ", "_")
		h := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) { return fn() }}
		if err := resp.RPCRegister("fail", notifier.Match{}, cmd, h); err != nil {
			t.Fatal(err)
		}
		res, err := caller.RPC(rpcCtx(t, 20*time.Second), "fail", 1, cmd, nil)
		if err != nil || len(res) != 1 {
			t.Errorf("%s: %d results, %v; want one result and no error", name, len(res), err)
			continue
		}
		if strings.Contains(name, "under") {
			var b []byte
			if err := res[0].Decode(&b); err != nil || len(b) != max-64 {
				t.Errorf("%s: %d bytes, %v", name, len(b), err)
			}
			continue
		}
		re := rpcRemote(t, res[0])
		if re.Code != notifier.CodeEncode && re.Code != notifier.CodeHandler {
			t.Errorf("%s: %v, want an encoding error", name, re)
		}
	}
}

// TestRPCPeerGoneEndsCall: a call in flight to a Notifier that dies ends as
// soon as the directory forgets it, with what the others answered, and a
// slice drawn there is drawn again among the remaining slices.
func TestRPCPeerGoneEndsCall(t *testing.T) {
	s := testenv.Run(t)
	fast := notifier.WithHeartbeat(50 * time.Millisecond)
	caller := connect(t, s.URL(), fast)
	other := connect(t, s.URL(), fast)
	doomed, doomedConn := rpcNew(t, s.URL(), fast)
	release := rpcRelease(t)
	entered := make(chan struct{}, 4)
	must(t, doomed.RPCRegister("gone", notifier.Match{}, "full", rpcBlock("doomed", entered, release)))
	must(t, other.RPCRegister("gone", notifier.Match{}, "full", rpcConst("other")))
	must(t, doomed.RPCSlice("gone", notifier.Match{}, "slice", rpcBlock("doomed", entered, release), 1))
	must(t, other.RPCSlice("gone", notifier.Match{}, "slice", rpcConst("standby"), 0))

	const deadline = 30 * time.Second // far beyond how long it takes the directory to notice
	type outcome struct {
		res []notifier.Result
		err error
	}
	calls := map[string]chan outcome{"full": make(chan outcome, 1), "slice": make(chan outcome, 1)}
	for cmd, ch := range calls {
		go func() {
			res, err := caller.RPC(rpcCtx(t, deadline), "gone", 1, cmd, nil)
			ch <- outcome{res, err}
		}()
	}
	rpcRecv(t, entered, rpcWait, "call reaching the doomed responder")
	rpcRecv(t, entered, rpcWait, "second call reaching the doomed responder")
	rpcKill(t, s, doomedConn)
	full := rpcRecv(t, calls["full"], deadline/2, "end of the full call")
	if full.err != nil || !slicesEqual(rpcStrings(t, full.res), []string{"other"}) {
		t.Errorf("full call: %v, %v; want [other] and nil", rpcStrings(t, full.res), full.err)
	}
	slice := rpcRecv(t, calls["slice"], deadline/2, "end of the slice call")
	if slice.err != nil || !slicesEqual(rpcStrings(t, slice.res), []string{"standby"}) {
		t.Errorf("slice call: %v, %v; want [standby] (drawn again) and nil", rpcStrings(t, slice.res), slice.err)
	}
}

// TestRPCNoRespondersEndsOtherCalls: "no responders" on a later call to a
// dead Notifier ends the calls already in flight to it.
func TestRPCNoRespondersEndsOtherCalls(t *testing.T) {
	s := testenv.Run(t)
	slow := notifier.WithHeartbeat(time.Hour) // the directory alone would not notice
	caller := connect(t, s.URL(), slow)
	doomed, doomedConn := rpcNew(t, s.URL(), slow)
	release := rpcRelease(t)
	entered := make(chan struct{}, 1)
	must(t, doomed.RPCRegister("nr", notifier.Match{}, "block", rpcBlock("doomed", entered, release)))
	must(t, doomed.RPCRegister("nr", notifier.Match{}, "later", rpcConst("x")))
	done := make(chan error, 1)
	go func() {
		_, err := caller.RPC(rpcCtx(t, 60*time.Second), "nr", 1, "block", nil)
		done <- err
	}()
	rpcRecv(t, entered, rpcWait, "the call reaching the doomed responder")
	rpcKill(t, s, doomedConn)
	if _, err := caller.RPC(rpcCtx(t, rpcWait), "nr", 1, "later", nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Errorf("later call: %v, want ErrNoResponders", err)
	}
	if err := rpcRecv(t, done, 20*time.Second, "end of the call in flight"); !errors.Is(err, notifier.ErrNoResponders) {
		t.Errorf("call in flight: %v, want ErrNoResponders (nobody answered)", err)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
