package notifier_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// nameMethods calls every method that takes an object and a cmd.
var nameMethods = []struct {
	name string
	call func(n *notifier.Notifier, object, cmd string) error
}{
	{"Subscribe", func(n *notifier.Notifier, o, c string) error {
		return n.Subscribe(o, notifier.Match{}, c, &recorder{})
	}},
	{"Slice", func(n *notifier.Notifier, o, c string) error {
		return n.Slice(o, notifier.Match{}, c, &recorder{}, 1)
	}},
	{"Unsubscribe", func(n *notifier.Notifier, o, c string) error {
		return n.Unsubscribe(o, notifier.Match{}, c, &recorder{})
	}},
	{"Publish", func(n *notifier.Notifier, o, c string) error {
		return n.Publish(o, 1, c, nil)
	}},
	{"RPCRegister", func(n *notifier.Notifier, o, c string) error {
		return n.RPCRegister(o, notifier.Match{}, c, &dual{})
	}},
	{"RPCSlice", func(n *notifier.Notifier, o, c string) error {
		return n.RPCSlice(o, notifier.Match{}, c, &dual{}, 1)
	}},
	{"RPCUnregister", func(n *notifier.Notifier, o, c string) error {
		return n.RPCUnregister(o, notifier.Match{}, c, &dual{})
	}},
	{"RPC", func(n *notifier.Notifier, o, c string) error {
		_, err := n.RPC(context.Background(), o, 1, c, nil)
		return err
	}},
	{"RPCs", func(n *notifier.Notifier, o, c string) error {
		_, err := n.RPCs(context.Background(), o, []int64{1}, c, nil)
		return err
	}},
	{"RPCCall", func(n *notifier.Notifier, o, c string) error {
		return n.RPCCall(o, 1, c, nil, &resultSink{})
	}},
}

// resultSink is a ResultHandler counting its calls.
type resultSink struct{ calls atomic.Int64 }

func (s *resultSink) RPCResponse(object string, id int64, cmd string, results []notifier.Result, err error) {
	s.calls.Add(1)
}

func TestInvalidNames(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	bad := map[string]string{
		"empty":          "",
		"dot":            "a.b",
		"star":           "a*",
		"lone star":      "*",
		"gt":             "a>",
		"lone gt":        ">",
		"space":          "a b",
		"tab":            "a\tb",
		"newline":        "a\nb",
		"carriage ret":   "a\rb",
		"nul":            "a\x00b",
		"control char":   "a\x01b",
		"del":            "a\x7fb",
		"129 bytes":      strings.Repeat("x", 129),
		"129 bytes utf8": strings.Repeat("é", 64) + "x", // 129 bytes, 65 runes
	}
	for _, m := range nameMethods {
		for what, name := range bad {
			if err := m.call(n, name, "cmd"); !errors.Is(err, notifier.ErrInvalidName) {
				t.Errorf("%s with object %s (%q): %v, want ErrInvalidName", m.name, what, name, err)
			}
			if err := m.call(n, "object", name); !errors.Is(err, notifier.ErrInvalidName) {
				t.Errorf("%s with cmd %s (%q): %v, want ErrInvalidName", m.name, what, name, err)
			}
		}
	}

	// 128 bytes is the longest name: accepted and delivered.
	long := strings.Repeat("x", 127) + "y"
	pub := connect(t, s.URL())
	recv := connect(t, s.URL())
	r := &recorder{}
	if err := recv.Subscribe(long, notifier.Match{}, long, r); err != nil {
		t.Fatalf("subscribe with 128-byte names: %v", err)
	}
	if err := pub.Publish(long, 7, long, nil); err != nil {
		t.Fatalf("publish with 128-byte names: %v", err)
	}
	r.waitLen(t, 1, deliveryTimeout)
	if got := r.Notes()[0]; got.Object != long || got.Cmd != long || got.ID != 7 {
		t.Errorf("got %q/%d/%q", got.Object, got.ID, got.Cmd)
	}
	for _, m := range nameMethods {
		if err := m.call(n, long, long); errors.Is(err, notifier.ErrInvalidName) {
			t.Errorf("%s with 128-byte names: %v", m.name, err)
		}
	}
}

func TestInvalidNamesUnicode(t *testing.T) {
	// SPEC §2: no whitespace or control characters; these are both, in
	// Unicode (unicode.IsSpace and, for U+0085, unicode.IsControl).
	s := testenv.Run(t)
	n := connect(t, s.URL())
	for what, name := range map[string]string{
		"next line U+0085":   "a\u0085b",
		"no-break U+00A0":    "a\u00a0b",
		"line sep U+2028":    "a\u2028b",
		"ideographic U+3000": "a\u3000b",
	} {
		if err := n.Subscribe(name, notifier.Match{}, "cmd", &recorder{}); !errors.Is(err, notifier.ErrInvalidName) {
			t.Errorf("Subscribe with object %s: %v, want ErrInvalidName", what, err)
		}
		if err := n.Publish("object", 1, name, nil); !errors.Is(err, notifier.ErrInvalidName) {
			t.Errorf("Publish with cmd %s: %v, want ErrInvalidName", what, err)
		}
	}
}

func TestInvalidWeight(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	for _, w := range []float64{-1, -math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := n.Slice("o", notifier.Match{}, "c", &recorder{}, w); !errors.Is(err, notifier.ErrInvalidWeight) {
			t.Errorf("Slice weight %v: %v, want ErrInvalidWeight", w, err)
		}
		if err := n.RPCSlice("o", notifier.Match{}, "c", &dual{}, w); !errors.Is(err, notifier.ErrInvalidWeight) {
			t.Errorf("RPCSlice weight %v: %v, want ErrInvalidWeight", w, err)
		}
	}
	for _, w := range []float64{0, math.SmallestNonzeroFloat64, 1, math.MaxFloat64} {
		if err := n.Slice("o", notifier.Match{}, "c", &recorder{}, w); err != nil {
			t.Errorf("Slice weight %v: %v", w, err)
		}
	}
}

// Destinations that are not comparable, or nil.
type (
	funcSub   func(object string, id int64, cmd string, args notifier.Args)
	mapSub    map[string]int
	structSub struct{ ids []int64 }
	funcResp  func() (any, error)
)

func (f funcSub) Notify(object string, id int64, cmd string, args notifier.Args) {
	f(object, id, cmd, args)
}
func (mapSub) Notify(string, int64, string, notifier.Args)    {}
func (structSub) Notify(string, int64, string, notifier.Args) {}
func (f funcResp) RPCCall(context.Context, string, int64, string, notifier.Args) (any, error) {
	return f()
}

func TestInvalidDestination(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	subs := map[string]notifier.Subscriber{
		"nil":               nil,
		"typed nil pointer": (*recorder)(nil),
		"nil func":          funcSub(nil),
		"func":              funcSub(func(string, int64, string, notifier.Args) {}),
		"map":               mapSub{"a": 1},
		"struct with slice": structSub{ids: []int64{1}},
	}
	for what, d := range subs {
		for _, m := range []struct {
			name string
			call func() error
		}{
			{"Subscribe", func() error { return n.Subscribe("o", notifier.Match{}, "c", d) }},
			{"Slice", func() error { return n.Slice("o", notifier.Match{}, "c", d, 1) }},
			{"Unsubscribe", func() error { return n.Unsubscribe("o", notifier.Match{}, "c", d) }},
			{"UnsubscribeAll", func() error { return n.UnsubscribeAll(d) }},
		} {
			if err := m.call(); !errors.Is(err, notifier.ErrInvalidDestination) {
				t.Errorf("%s with %s destination: %v, want ErrInvalidDestination", m.name, what, err)
			}
		}
	}
	resps := map[string]notifier.Responder{
		"nil":               nil,
		"typed nil pointer": (*dual)(nil),
		"func":              funcResp(func() (any, error) { return nil, nil }),
	}
	for what, d := range resps {
		for _, m := range []struct {
			name string
			call func() error
		}{
			{"RPCRegister", func() error { return n.RPCRegister("o", notifier.Match{}, "c", d) }},
			{"RPCSlice", func() error { return n.RPCSlice("o", notifier.Match{}, "c", d, 1) }},
			{"RPCUnregister", func() error { return n.RPCUnregister("o", notifier.Match{}, "c", d) }},
			{"RPCUnregisterAll", func() error { return n.RPCUnregisterAll(d) }},
		} {
			if err := m.call(); !errors.Is(err, notifier.ErrInvalidDestination) {
				t.Errorf("%s with %s destination: %v, want ErrInvalidDestination", m.name, what, err)
			}
		}
	}
	if err := n.RPCCall("o", 1, "c", nil, nil); err == nil {
		t.Errorf("RPCCall with a nil ResultHandler: nil error")
	}
}

func TestNotRegistered(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL())
	n := connect(t, s.URL())
	const object, cmd = "notreg", "c"
	r, other, d := &recorder{}, &recorder{}, &dual{}
	if err := n.Subscribe(object, notifier.Exact(1), cmd, r); err != nil {
		t.Fatal(err)
	}
	if err := n.RPCRegister(object, notifier.Exact(1), cmd, d); err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"other pattern":         func() error { return n.Unsubscribe(object, notifier.Exact(2), cmd, r) },
		"other mask":            func() error { return n.Unsubscribe(object, notifier.Match{Mask: 1, Value: 1}, cmd, r) },
		"other cmd":             func() error { return n.Unsubscribe(object, notifier.Exact(1), cmd+"x", r) },
		"other object":          func() error { return n.Unsubscribe(object+"x", notifier.Exact(1), cmd, r) },
		"other destination":     func() error { return n.Unsubscribe(object, notifier.Exact(1), cmd, other) },
		"RPC registration":      func() error { return n.Unsubscribe(object, notifier.Exact(1), cmd, d) },
		"notification as RPC":   func() error { return n.RPCUnregister(object, notifier.Exact(1), cmd, &dual{}) },
		"RPC, other pattern":    func() error { return n.RPCUnregister(object, notifier.Exact(2), cmd, d) },
		"on another Notifier":   func() error { return pub.Unsubscribe(object, notifier.Exact(1), cmd, r) },
		"RPC on another":        func() error { return pub.RPCUnregister(object, notifier.Exact(1), cmd, d) },
		"registered as RPC too": func() error { return n.Unsubscribe(object, notifier.Exact(1), cmd, &dual{}) },
	} {
		if err := call(); !errors.Is(err, notifier.ErrNotRegistered) {
			t.Errorf("unregister with %s: %v, want ErrNotRegistered", what, err)
		}
	}
	for what, call := range map[string]func() error{
		"UnsubscribeAll":   func() error { return n.UnsubscribeAll(other) },
		"RPCUnregisterAll": func() error { return n.RPCUnregisterAll(&dual{}) },
		"UnsubscribeAll of an RPC destination": func() error {
			return n.UnsubscribeAll(d)
		},
	} {
		if err := call(); err != nil {
			t.Errorf("%s of an unknown destination: %v, want nil", what, err)
		}
	}

	// Nothing changed: both registrations still work.
	if err := pub.Publish(object, 1, cmd, nil); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 1, deliveryTimeout)
	res, err := pub.RPC(context.Background(), object, 1, cmd, nil)
	if err != nil || len(res) != 1 {
		t.Errorf("RPC after failed unregistrations: %v, %v; want one result", res, err)
	}

	if err := n.Unsubscribe(object, notifier.Exact(1), cmd, r); err != nil {
		t.Fatal(err)
	}
	if err := n.Unsubscribe(object, notifier.Exact(1), cmd, r); !errors.Is(err, notifier.ErrNotRegistered) {
		t.Errorf("second Unsubscribe: %v, want ErrNotRegistered", err)
	}
	if err := n.UnsubscribeAll(r); err != nil {
		t.Errorf("UnsubscribeAll after Unsubscribe: %v, want nil", err)
	}
	if err := n.RPCUnregisterAll(d); err != nil {
		t.Fatal(err)
	}
	if err := n.RPCUnregister(object, notifier.Exact(1), cmd, d); !errors.Is(err, notifier.ErrNotRegistered) {
		t.Errorf("RPCUnregister after RPCUnregisterAll: %v, want ErrNotRegistered", err)
	}
}

func TestPayloadTooLarge(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL())
	recv := connect(t, s.URL())
	const object, cmd = "big", "c"
	local, remote, slice := &recorder{}, &recorder{}, &recorder{}
	if err := pub.Subscribe(object, notifier.Match{}, cmd, local); err != nil {
		t.Fatal(err)
	}
	if err := recv.Subscribe(object, notifier.Match{}, cmd, remote); err != nil {
		t.Fatal(err)
	}
	if err := recv.Slice(object, notifier.Match{}, cmd, slice, 1); err != nil {
		t.Fatal(err)
	}
	max := pub.Conn().MaxPayload()
	if max <= 0 {
		t.Fatalf("max payload %d", max)
	}
	before := pub.Stats().Published
	for id, size := range map[int64]int64{1: 2 << 20, 3: max, 5: max + 1} {
		err := pub.Publish(object, id, cmd, make([]byte, size))
		if !errors.Is(err, notifier.ErrPayloadTooLarge) {
			t.Errorf("publish %d bytes (max payload %d): %v, want ErrPayloadTooLarge", size, max, err)
		}
	}
	// Just under the limit (msgpack adds 5 bytes to a []byte, the frame a few).
	if err := pub.Publish(object, 2, cmd, make([]byte, max-64)); err != nil {
		t.Errorf("publish %d bytes (max payload %d): %v", max-64, max, err)
	}
	if err := pub.Publish(object, 4, cmd, nil); err != nil {
		t.Fatal(err)
	}
	if got := pub.Stats().Published - before; got != 2 {
		t.Errorf("Stats().Published grew by %d, want 2: rejected publishes were counted as sent", got)
	}
	remote.waitLen(t, 2, deliveryTimeout)
	slice.waitLen(t, 2, deliveryTimeout)
	pubFlush(t, pub, recv)
	for name, r := range map[string]*recorder{"local": local, "remote": remote, "slice": slice} {
		if got := r.IDs(); !slices.Equal(got, []int64{2, 4}) {
			t.Errorf("%s: got ids %v, want [2 4]: a rejected publish was delivered", name, got)
		}
	}
	if ns := remote.Notes(); len(ns) > 0 {
		var b []byte
		if err := ns[0].Args.Decode(&b); err != nil || int64(len(b)) != max-64 {
			t.Errorf("large payload arrived with %d bytes (%v), want %d", len(b), err, max-64)
		}
	}
}

func TestEncodeError(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL())
	recv := connect(t, s.URL())
	const object, cmd = "enc", "c"
	r := &recorder{}
	if err := recv.Subscribe(object, notifier.Match{}, cmd, r); err != nil {
		t.Fatal(err)
	}
	for what, args := range map[string]any{
		"channel":        make(chan int),
		"func":           func() {},
		"nested channel": map[string]any{"c": make(chan int)},
	} {
		if err := pub.Publish(object, 1, cmd, args); !errors.Is(err, notifier.ErrEncode) {
			t.Errorf("publish a %s: %v, want ErrEncode", what, err)
		}
	}
	if err := pub.Publish(object, 2, cmd, map[string]any{"ok": []int{1}}); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 1, deliveryTimeout)
	pubFlush(t, pub, recv)
	if got := r.IDs(); !slices.Equal(got, []int64{2}) {
		t.Errorf("got ids %v, want [2]: a publish that failed to encode was delivered", got)
	}
}

func TestClosedErrors(t *testing.T) {
	s := testenv.Run(t)
	n := connect(t, s.URL())
	r, d := &recorder{}, &dual{}
	if err := n.Subscribe("o", notifier.Exact(1), "c", r); err != nil {
		t.Fatal(err)
	}
	if err := n.RPCRegister("o", notifier.Exact(1), "c", d); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	sink := &resultSink{}
	for what, call := range map[string]func() error{
		"Subscribe":   func() error { return n.Subscribe("o", notifier.Exact(2), "c", &recorder{}) },
		"Slice":       func() error { return n.Slice("o", notifier.Exact(2), "c", &recorder{}, 1) },
		"Unsubscribe": func() error { return n.Unsubscribe("o", notifier.Exact(1), "c", r) },
		"UnsubscribeAll": func() error {
			return n.UnsubscribeAll(r)
		},
		"Publish":       func() error { return n.Publish("o", 1, "c", nil) },
		"RPCRegister":   func() error { return n.RPCRegister("o", notifier.Exact(2), "c", &dual{}) },
		"RPCSlice":      func() error { return n.RPCSlice("o", notifier.Exact(2), "c", &dual{}, 1) },
		"RPCUnregister": func() error { return n.RPCUnregister("o", notifier.Exact(1), "c", d) },
		"RPCUnregisterAll": func() error {
			return n.RPCUnregisterAll(d)
		},
		"RPC": func() error {
			_, err := n.RPC(context.Background(), "o", 1, "c", nil)
			return err
		},
		"RPCs": func() error {
			_, err := n.RPCs(context.Background(), "o", []int64{1, 2}, "c", nil)
			return err
		},
		"RPCs with no ids": func() error {
			_, err := n.RPCs(context.Background(), "o", nil, "c", nil)
			return err
		},
		"RPCCall": func() error { return n.RPCCall("o", 1, "c", nil, sink) },
		"Close":   n.Close,
	} {
		if err := call(); !errors.Is(err, notifier.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	if got := sink.calls.Load(); got != 0 {
		t.Errorf("RPCCall after Close called RPCResponse %d times", got)
	}
}

// panicker panics in every Notify, after counting the call.
type panicker struct{ calls atomic.Int64 }

func (p *panicker) Notify(string, int64, string, notifier.Args) {
	p.calls.Add(1)
	panic("panicker")
}

func TestPanickingSubscriber(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL())
	b := connect(t, s.URL())
	c := connect(t, s.URL())
	const object, cmd, n = "panic", "c", 20
	p, ps := &panicker{}, &panicker{}
	good, goodC := &recorder{}, &recorder{}
	if err := b.Subscribe(object, notifier.Match{}, cmd, p); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{}, cmd, ps, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(object, notifier.Match{}, cmd, good); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(object, notifier.Match{}, cmd, goodC); err != nil {
		t.Fatal(err)
	}
	for id := range int64(n) {
		if err := pub.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	good.waitLen(t, n, deliveryTimeout)
	goodC.waitLen(t, n, deliveryTimeout)
	eventually(t, deliveryTimeout, func() bool { return p.calls.Load() == n && ps.calls.Load() == n },
		"every notification reaches the panicking Subscribers (got %d full, %d slice)", lazyInt{&p.calls}, lazyInt{&ps.calls})
	eventually(t, deliveryTimeout, func() bool { return b.Stats().Panics == 2*n }, "Stats().Panics == %d", 2*n)

	// The Notifier keeps working: registering, publishing, delivering.
	r := &recorder{}
	if err := b.Subscribe(object+"2", notifier.Match{}, cmd, r); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(object+"2", 1, cmd, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(object+"2", 2, cmd, nil); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 2, deliveryTimeout)
}

// lazyInt prints an atomic counter when formatted.
type lazyInt struct{ v *atomic.Int64 }

func (l lazyInt) String() string { return strconv.FormatInt(l.v.Load(), 10) }

// blocker blocks in Notify until release is closed.
type blocker struct {
	release chan struct{}
	calls   atomic.Int64
}

func (b *blocker) Notify(string, int64, string, notifier.Args) {
	b.calls.Add(1)
	<-b.release
}

func TestBlockedSubscriber(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL())
	const queue = 10
	b := connect(t, s.URL(), notifier.WithQueueSize(queue))
	blk := &blocker{release: make(chan struct{})}
	t.Cleanup(func() { close(blk.release) }) // runs before b.Close
	const cmd, n, batch, size = "c", 1000, queue / 2, 10 << 10
	good := &recorder{}
	// Same Notifier, same object: the blocked destination and a good one.
	// The blocked one also gets 10 KiB on another object, to weigh its queue.
	if err := b.Subscribe("blocked", notifier.Match{}, cmd, blk); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe("blocked", notifier.Match{}, cmd, good); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe("heavy", notifier.Match{}, cmd, blk); err != nil {
		t.Fatal(err)
	}
	heavy := make([]byte, size)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	// good's queue holds 10 too: publish in batches it can take, waiting for
	// each, while blk's queues overflow.
	for id := int64(0); id < n; id += batch {
		for k := id; k < id+batch; k++ {
			if err := pub.Publish("heavy", k, cmd, heavy); err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish("blocked", k, cmd, nil); err != nil {
				t.Fatal(err)
			}
		}
		good.waitLen(t, int(id+batch), deliveryTimeout)
	}
	pubFlush(t, pub, b)
	grown := int64(heap()) - int64(before)
	if got := good.IDs(); !slices.Equal(got, seq(n)) {
		t.Errorf("the other Subscriber got %s, want all %d in order", fmtIDs(got), n)
	}
	if got := blk.calls.Load(); got != 2 {
		t.Errorf("the blocked Subscriber was called %d times, want 2 (once per registration; it never returns)", got)
	}
	// Per registration, one notification is being handled, the queue holds
	// 10, the rest drop.
	if got, want := b.Stats().Dropped, uint64(2*(n-1-queue)); got < want {
		t.Errorf("Stats().Dropped = %d, want at least %d: the queue is not bounded", got, want)
	}
	// Unbounded, the heavy payloads alone would hold n*size = 10 MB.
	t.Logf("heap grew by %d KiB", grown>>10)
	if grown > n*size/4 {
		t.Errorf("heap grew by %d KiB while a Subscriber was blocked: memory is not bounded", grown>>10)
	}
}

func TestUndecodableMessages(t *testing.T) {
	s := testenv.Run(t)
	a := connect(t, s.URL())
	b := connect(t, s.URL())
	const object, cmd = "garbage", "c"
	r := &recorder{}
	if err := b.Subscribe(object, notifier.Match{}, cmd, r); err != nil {
		t.Fatal(err)
	}
	nc := testenv.Connect(t, s.URL())
	node := "notifier.node." + b.Node() + ".pub."
	raw := []struct {
		subject string
		header  nats.Header
		data    []byte
	}{
		// Routed to b's node directly, malformed.
		{node + object + "." + cmd + ".1", nil, nil},                          // no frame
		{node + object + "." + cmd + ".1", nil, []byte{0x02, 0xff, 0xff}},     // truncated slice id
		{node + object + "." + cmd + ".x", nil, []byte{0x01, 0xc0}},           // id not a number
		{node + object + "." + cmd, nil, []byte{0x01, 0xc0}},                  // no id
		{node + object + "." + cmd + ".99999999999999999999", nil, []byte{1}}, // id overflows int64
		// Gateway subjects, bad bodies.
		{"notifier.pub." + object + "." + cmd + ".1", nil, []byte("{not json")},
		{"notifier.pub." + object + "." + cmd + ".1", nats.Header{"Content-Type": {"application/json"}}, []byte("[1,")},
		{"notifier.pub." + object + "." + cmd + ".1", nats.Header{"Content-Type": {"application/msgpack"}}, []byte{0xc1}},
		{"notifier.pub." + object + "." + cmd + ".1", nats.Header{"Content-Type": {"text/plain"}}, []byte("hi")},
		{"notifier.pub." + object + "." + cmd + ".x", nil, []byte("1")},
	}
	for _, m := range raw {
		if err := nc.PublishMsg(&nats.Msg{Subject: m.subject, Header: m.header, Data: m.data}); err != nil {
			t.Fatal(err)
		}
	}
	// Good traffic after the garbage still flows.
	if err := nc.Publish("notifier.pub."+object+"."+cmd+".3", []byte(`"ok"`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("notifier.pub."+object+"."+cmd+".5", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(object, 4, cmd, "lib"); err != nil {
		t.Fatal(err)
	}
	undecodable := func() uint64 { return a.Stats().Undecodable + b.Stats().Undecodable }
	want := uint64(len(raw))
	eventually(t, deliveryTimeout, func() bool { return undecodable() >= want }, "Stats().Undecodable reaches %d", want)
	r.waitLen(t, 3, deliveryTimeout)
	pubFlush(t, a, b)
	if got := undecodable(); got != want {
		t.Errorf("Stats().Undecodable = %d, want %d", got, want)
	}
	if got := sorted(r.IDs()); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Fatalf("got ids %v, want [3 4 5]", got)
	}
	for _, no := range r.Notes() {
		var v any
		if err := no.Args.Decode(&v); err != nil {
			t.Errorf("id %d: decode: %v", no.ID, err)
		}
		want := map[int64]any{3: "ok", 4: "lib", 5: nil}[no.ID]
		if v != want {
			t.Errorf("id %d: args %v, want %v", no.ID, v, want)
		}
	}
}
