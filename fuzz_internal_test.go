package notifier

import (
	"context"
	"reflect"
	"runtime"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/testenv"
)

// Fuzz targets for every decoder of bytes from outside the process: routed
// frames, gateway subjects, gateway JSON and msgpack bodies, Args.Decode.
// Each asserts no panic, decoding memory bounded by the input's size, and,
// for a rejected input fed to the real handler of a live Notifier, no state
// change but the Undecodable counter. test.sh runs each for a few seconds.

// fuzzNotifier is a Notifier on an embedded server with one registration of
// each kind, for the handlers to find.
func fuzzNotifier(f *testing.F) *Notifier {
	s := testenv.Run(f)
	n, err := Connect(s.URL())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = n.Close() })
	sub := &fuzzSub{}
	for _, err := range []error{
		n.Subscribe("o", Match{}, "c", sub),
		n.Subscribe("o", Exact(1), "c", sub),
		n.Slice("o", Exact(1), "c", sub, 1),
		n.RPCRegister("o", Match{}, "c", &fuzzResp{}),
	} {
		if err != nil {
			f.Fatal(err)
		}
	}
	return n
}

type fuzzSub struct{}

func (*fuzzSub) Notify(string, int64, string, Args) {}

type fuzzResp struct{}

func (*fuzzResp) RPCCall(_ context.Context, _ string, _ int64, _ string, a Args) (any, error) {
	var v any
	return nil, a.Decode(&v)
}

// checkDecodeBounded decodes a into any and into a struct, failing t if it
// allocates more than a bound proportional to the payload.
func checkDecodeBounded(t *testing.T, a Args) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var v any
	_ = a.Decode(&v)
	var st struct {
		A []int
		B map[string]string
		C string
	}
	_ = a.Decode(&st)
	_ = a.String()
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(512*len(a.data))+2<<20 {
		t.Fatalf("decoding %d bytes allocated %d bytes", len(a.data), grew)
	}
}

// checkRejected runs handle, which must refuse its input: Undecodable grows
// by one, nothing else changes.
func checkRejected(t *testing.T, n *Notifier, handle func()) {
	t.Helper()
	before, regs := n.Stats(), n.Registrations()
	handle()
	after := n.Stats()
	want := before
	want.Undecodable++
	if after != want {
		t.Fatalf("a rejected input changed the stats from %+v to %+v", before, after)
	}
	if !reflect.DeepEqual(regs, n.Registrations()) {
		t.Fatal("a rejected input changed the registrations")
	}
}

func FuzzRoutedFrame(f *testing.F) {
	for _, s := range []struct {
		tail string
		data []byte
	}{
		{"o.c.1", []byte{frame.FlagFull, 0xc0}},
		{"o.c.1", []byte{frame.FlagSlice, 0x03, 0x92, 0x01, 0x02}},
		{"o.c.-5", []byte{frame.FlagFull | frame.FlagJSON, '[', '1', ']'}},
		{"o.c.1", []byte{frame.FlagFull | frame.FlagTimeout, 0xe8, 0x07, 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"o.c.x", []byte{frame.FlagFull}},
		{"o..1", nil},
	} {
		f.Add(s.tail, s.data)
	}
	n := fuzzNotifier(f)
	pub := n.subj.NodeData(n.node, bus.KindPub)
	f.Fuzz(func(t *testing.T, tail string, data []byte) {
		subject := pub + tail
		_, _, _, _, args, err := parseRouted(subject, len(pub), data)
		if err == nil {
			checkDecodeBounded(t, args)
			return
		}
		if args.data != nil {
			t.Fatal("a rejected frame returned arguments")
		}
		checkRejected(t, n, func() { n.onPub(&nats.Msg{Subject: subject, Data: data}, len(pub)) })
	})
}

func FuzzGatewaySubject(f *testing.F) {
	for _, s := range []string{"o.c.1", "o.c.-9223372036854775808", "o.c.abc", "o.c", "o.c.1.2", "o*.c.1", ".c.1", "o.c.+1", "o.c. 1"} {
		f.Add(s)
	}
	n := fuzzNotifier(f)
	prefix := n.subj.Gateway(bus.KindPub)
	f.Fuzz(func(t *testing.T, tail string) {
		subject := prefix + tail
		object, cmd, _, err := parseGatewayAddr(subject, tail)
		if err == nil {
			if checkNames(object, cmd) != nil {
				t.Fatalf("accepted invalid names %q %q", object, cmd)
			}
			return
		}
		checkRejected(t, n, func() { n.onGatewayPub(&nats.Msg{Subject: subject}, len(prefix)) })
	})
}

// fuzzGatewayBody fuzzes gateway bodies under Content-Type ct.
func fuzzGatewayBody(f *testing.F, ct string, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	n := fuzzNotifier(f)
	prefix := n.subj.Gateway(bus.KindPub)
	subject := prefix + "o.c.1"
	var h nats.Header
	if ct != "" {
		h = nats.Header{"Content-Type": []string{ct}}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		g, err := parseGateway(subject, len(prefix), h, body)
		if err == nil {
			checkDecodeBounded(t, Args{data: g.body, json: g.json})
			return
		}
		checkRejected(t, n, func() { n.onGatewayPub(&nats.Msg{Subject: subject, Header: h, Data: body}, len(prefix)) })
	})
}

func FuzzGatewayJSON(f *testing.F) {
	fuzzGatewayBody(f, "", [][]byte{
		[]byte(`{"a":[1,2,{"b":null}]}`), []byte(`"<x>"`), []byte(`[`), []byte(`1 2`), nil, []byte(`{"a":1}x`),
	})
}

func FuzzGatewayMsgpack(f *testing.F) {
	fuzzGatewayBody(f, ContentTypeMsgpack, [][]byte{
		{0xc0}, {0x92, 0x01, 0xa1, 'x'}, {0xdd, 0xff, 0xff, 0xff, 0xff}, {0xa1, 'x', 0x22}, {0xdf, 0, 0, 0, 1, 0xa1, 'k', 0xc0},
	})
}

func FuzzArgsDecode(f *testing.F) {
	for _, s := range [][]byte{
		{0xc0}, {0x93, 0x01, 0x02, 0x03}, {0x83, 0xa1, 'A', 0x91, 0x01, 0xa1, 'B', 0x80, 0xa1, 'C', 0xa1, 'x'},
		{0xdd, 0xff, 0xff, 0xff, 0xff}, {0xdb, 0xff, 0xff, 0xff, 0xff}, {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},
		[]byte(`{"A":[1],"B":{"k":"v"},"C":"s"}`),
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		checkDecodeBounded(t, Args{data: data, json: isJSON})
	})
}
