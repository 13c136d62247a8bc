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
		{"heartbeat", &announcement{Type: annHeartbeat, Node: "n1", Ver: math.MaxUint64}, 0x96, func() any { return new(announcement) }},
		{"delta", &announcement{Type: annDelta, Node: "n1", Ver: 3, Puts: wireRegs, Dels: []uint64{0, 1, math.MaxUint64}}, 0x96, func() any { return new(announcement) }},
		{"bye", &announcement{Type: annBye, Node: "n1"}, 0x96, func() any { return new(announcement) }},
		{"ack", &ack{Node: "n2", Ver: 1 << 33}, 0x92, func() any { return new(ack) }},
		{"table part", &tablePart{Node: "n1", Ver: 9, Part: 2, Parts: 3, Regs: wireRegs}, 0x95, func() any { return new(tablePart) }},
		{"empty table", &tablePart{Node: "n1", Parts: 1}, 0x95, func() any { return new(tablePart) }},
		{"probe", &probe{Node: "n1", Digest: math.MaxUint64, Vector: true}, 0x93, func() any { return new(probe) }},
		{"probe reply", &probeReply{Node: "n2", Ver: 7, Digest: 1, Knows: true, Nodes: []string{"n1", "n2"}, Vers: []uint64{0, 7}}, 0x96, func() any { return new(probeReply) }},
		{"drop", &announcement{Type: annDrop, Node: "n1", Ver: 2, Puts: []Reg{}, Dels: []uint64{}, Target: "n2"}, 0x96, func() any { return new(announcement) }},
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
