package notifier_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

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
	// The name rule (bus.ValidName): no whitespace or control characters; these are both, in
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
