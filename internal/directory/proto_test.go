package directory

import (
	"math"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/match"
)

// wireRegs cover every field of Reg with extreme values.
var wireRegs = []Reg{
	{ID: 0, Kind: bus.KindPub, Object: "o", Cmd: "c"},
	{ID: math.MaxUint64, Kind: bus.KindRPC, Object: "héllo", Cmd: "通知", Mask: -1, Value: math.MinInt64, Slice: true, Weight: 0.25},
	{ID: 1 << 40, Kind: bus.KindPub, Object: "obj", Cmd: "cmd", Mask: math.MaxInt64, Value: math.MaxInt64, Slice: true, Weight: math.MaxFloat64},
	{ID: 7, Kind: bus.KindRPC, Object: "x", Cmd: "y", Mask: 0xff, Value: 0x0f, Weight: math.SmallestNonzeroFloat64},
}

// TestWireRoundTrip encodes every directory message and decodes it back. The
// messages are msgpack arrays, so the field order is the wire format.
func TestWireRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		v     any
		array byte // msgpack fixarray header: 0x90 | number of fields
		out   func() any
	}{
		{"Reg", &wireRegs[1], 0x98, func() any { return new(Reg) }},
		{"heartbeat", &announcement{Type: annHeartbeat, Node: "n1", Ver: math.MaxUint64}, 0x97, func() any { return new(announcement) }},
		{"delta", &announcement{Type: annDelta, Node: "n1", Ver: 3, Puts: wireRegs, Dels: []uint64{0, 1, math.MaxUint64}}, 0x97, func() any { return new(announcement) }},
		{"bye", &announcement{Type: annBye, Node: "n1"}, 0x97, func() any { return new(announcement) }},
		{"ack", &ack{Node: "n2", Ver: 1 << 33}, 0x92, func() any { return new(ack) }},
		{"table part", &tablePart{Node: "n1", Ver: 9, Part: 2, Parts: 3, Regs: wireRegs}, 0x95, func() any { return new(tablePart) }},
		{"empty table", &tablePart{Node: "n1", Parts: 1}, 0x95, func() any { return new(tablePart) }},
		{"probe", &probe{Node: "n1", Digest: math.MaxUint64, Vector: true}, 0x93, func() any { return new(probe) }},
		{"probe reply", &probeReply{Node: "n2", Ver: 7, Digest: 1, Knows: true, Nodes: []string{"n1", "n2"}, Vers: []uint64{0, 7}}, 0x96, func() any { return new(probeReply) }},
		{"drop", &announcement{Type: annDrop, Node: "n1", Ver: 2, Puts: []Reg{}, Dels: []uint64{}, Target: "n2"}, 0x97, func() any { return new(announcement) }},
		{"member list", &memberList{Nodes: []string{"n1", "n2", "héllo"}}, 0x91, func() any { return new(memberList) }},
	}
	for _, tt := range tests {
		data, err := msgpack.Marshal(tt.v)
		if err != nil {
			t.Fatalf("%s: marshal: %v", tt.name, err)
		}
		if data[0] != tt.array {
			t.Errorf("%s: encoded as %#x..., want the array header %#x", tt.name, data[0], tt.array)
		}
		out := tt.out()
		if err := msgpack.Unmarshal(data, out); err != nil {
			t.Fatalf("%s: unmarshal: %v", tt.name, err)
		}
		if !reflect.DeepEqual(out, tt.v) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", tt.name, out, tt.v)
		}
	}
}

func TestRegEntry(t *testing.T) {
	r := wireRegs[1]
	want := Entry{
		Object:  r.Object,
		Cmd:     r.Cmd,
		Pattern: match.Pattern{Mask: r.Mask, Value: r.Value},
		Slice:   true,
		Weight:  0.25,
		Key:     RegRef{Node: "n9", ID: math.MaxUint64},
	}
	if got := r.entry("n9"); got != want {
		t.Errorf("entry = %+v, want %+v", got, want)
	}
}

// regReflect is Reg without its hand-written msgpack methods: the form
// msgpack's reflection gives the struct tag, which is the wire format.
type regReflect struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Kind     bus.Kind
	Object   string
	Cmd      string
	Mask     int64
	Value    int64
	Slice    bool
	Weight   float64
}

// TestRegCodecIsTheTaggedForm: Reg's hand-written codec and reflection over
// the tagged struct read each other's bytes (the hand-written one writes
// integers in their shortest form, reflection in a fixed width); a longer
// array (a newer peer) is read with the extra fields skipped, a shorter one
// with the missing fields zero, and a wrong type is an error.
func TestRegCodecIsTheTaggedForm(t *testing.T) {
	for _, r := range wireRegs {
		mirror := regReflect{ID: r.ID, Kind: r.Kind, Object: r.Object, Cmd: r.Cmd, Mask: r.Mask, Value: r.Value, Slice: r.Slice, Weight: r.Weight}
		reflected, err := msgpack.Marshal(&mirror)
		if err != nil {
			t.Fatal(err)
		}
		written, err := msgpack.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if len(written) > len(reflected) {
			t.Errorf("Reg %+v takes %d bytes, reflection %d", r, len(written), len(reflected))
		}
		var back Reg
		if err := msgpack.Unmarshal(reflected, &back); err != nil || back != r {
			t.Errorf("decoding reflection's bytes of %+v: %+v, %v", r, back, err)
		}
		var other regReflect
		if err := msgpack.Unmarshal(written, &other); err != nil || other != mirror {
			t.Errorf("reflection decoding the written bytes of %+v: %+v, %v", r, other, err)
		}
	}
	longer, _ := msgpack.Marshal([]any{uint64(5), uint8(0), "o", "c", int64(1), int64(1), true, 2.5, "future", []int{1}})
	var r Reg
	if err := msgpack.Unmarshal(longer, &r); err != nil || r != (Reg{ID: 5, Object: "o", Cmd: "c", Mask: 1, Value: 1, Slice: true, Weight: 2.5}) {
		t.Errorf("a 10-field Reg decodes as %+v, %v", r, err)
	}
	shorter, _ := msgpack.Marshal([]any{uint64(6), uint8(1), "o"})
	if err := msgpack.Unmarshal(shorter, &r); err != nil || r != (Reg{ID: 6, Kind: bus.KindRPC, Object: "o"}) {
		t.Errorf("a 3-field Reg decodes as %+v, %v", r, err)
	}
	wrong, _ := msgpack.Marshal([]any{"not an id"})
	if err := msgpack.Unmarshal(wrong, &r); err == nil {
		t.Error("a Reg whose ID is a string decodes without error")
	}
}

// BenchmarkDecodeDelta decodes an announcement of 1,000 registrations, as
// every peer does for a Batch of 1,000 (announcement.decode).
func BenchmarkDecodeDelta(b *testing.B) {
	a := announcement{Type: annDelta, Node: "n1", Ver: 2}
	for i := range 1000 {
		a.Puts = append(a.Puts, Reg{ID: uint64(i), Object: "rbulk", Cmd: "c", Mask: -1, Value: int64(i)})
	}
	data, err := msgpack.Marshal(&a)
	if err != nil {
		b.Fatal(err)
	}
	var in interner
	b.ReportAllocs()
	for b.Loop() {
		var out announcement
		if err := out.decode(data, &in, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeDeltaReflect decodes the same announcement by reflection,
// the cost before Reg had its own codec.
func BenchmarkDecodeDeltaReflect(b *testing.B) {
	type annReflect struct {
		_msgpack struct{} `msgpack:",as_array"`
		Type     uint8
		Node     string
		Ver      uint64
		Puts     []regReflect
		Dels     []uint64
		Target   string
	}
	a := annReflect{Type: annDelta, Node: "n1", Ver: 2}
	for i := range 1000 {
		a.Puts = append(a.Puts, regReflect{ID: uint64(i), Object: "rbulk", Cmd: "c", Mask: -1, Value: int64(i)})
	}
	data, err := msgpack.Marshal(&a)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var out annReflect
		if err := msgpack.Unmarshal(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}
