package directory

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/wire"
)

// randReg returns a registration with every field drawn from r, the
// extremes included.
func randReg(r *rand.Rand) Reg {
	ints := []int64{0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -129, math.MaxInt64, math.MinInt64, r.Int64(), -r.Int64()}
	uints := []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 32, math.MaxUint64, r.Uint64()}
	floats := []float64{0, 0.25, 1, 3, math.MaxFloat64, math.SmallestNonzeroFloat64, r.Float64() * 1e6}
	name := func() string { return strings.Repeat("x", r.IntN(bus.MaxNameLen)+1) }
	return Reg{
		ID: uints[r.IntN(len(uints))], Kind: bus.Kind(r.IntN(int(numKinds))),
		Object: name(), Cmd: name(),
		Mask: ints[r.IntN(len(ints))], Value: ints[r.IntN(len(ints))],
		Slice: r.IntN(2) == 1, Weight: floats[r.IntN(len(floats))],
	}
}

// TestAnnouncementDecodeMatchesMsgpack decodes announcements and acks
// encoded by msgpack with the hand-written decoders and with msgpack's own:
// the two must agree on every field.
func TestAnnouncementDecodeMatchesMsgpack(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var in interner
	var buf []Reg // reused as the handler reuses pooled ones
	for i := range 2000 {
		a := announcement{Type: uint8(r.IntN(256)), Node: "n" + strings.Repeat("é", r.IntN(40)), Ver: r.Uint64() >> r.IntN(64)}
		switch i % 4 {
		case 0:
			a.Puts = make([]Reg, r.IntN(40))
			for j := range a.Puts {
				a.Puts[j] = randReg(r)
			}
			a.Dels = make([]uint64, r.IntN(40))
			for j := range a.Dels {
				a.Dels[j] = r.Uint64() >> r.IntN(64)
			}
		case 1:
			a.Target, a.Proven = "target", r.IntN(2) == 1
		case 2:
			a.Puts, a.Dels = []Reg{}, []uint64{} // empty, not nil: decodes as nil
		}
		data, err := msgpack.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		var want, got announcement
		if err := msgpack.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		if len(want.Puts) == 0 {
			want.Puts = nil
		}
		if len(want.Dels) == 0 {
			want.Dels = nil
		}
		if err := got.decode(data, &in, buf); err != nil {
			t.Fatalf("announcement %d: %v", i, err)
		}
		if cap(got.Puts) > cap(buf) {
			buf = got.Puts
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("announcement %d:\n got %+v\nwant %+v", i, got, want)
		}

		k := ack{Node: a.Node, Ver: a.Ver}
		data, err = msgpack.Marshal(&k)
		if err != nil {
			t.Fatal(err)
		}
		var back ack // appendAck writes compact integers: msgpack reads them back
		if err := msgpack.Unmarshal(appendAck(nil, k), &back); err != nil || back != k {
			t.Fatalf("appendAck(%+v) reads back as %+v, %v", k, back, err)
		}
		var gotAck ack
		if err := gotAck.decode(data, &in); err != nil || gotAck != k {
			t.Fatalf("ack %+v decoded as %+v, %v", k, gotAck, err)
		}
	}
}

// TestAnnouncementDecodeOtherVersions reads the arrays of a newer peer
// (more fields, each skipped, nested ones too) and of an older one (fewer
// fields, the rest zero), as msgpack's decoder does.
func TestAnnouncementDecodeOtherVersions(t *testing.T) {
	reg := wireRegs[1]
	newer := []any{annDelta, "n1", 5, []any{
		[]any{reg.ID, reg.Kind, reg.Object, reg.Cmd, reg.Mask, reg.Value, reg.Slice, reg.Weight, "future", map[string]any{"a": []int{1, 2}}},
	}, []uint64{9}, "", false, []any{1, "x", map[string]int{"y": 2}}, nil}
	data, err := msgpack.Marshal(newer)
	if err != nil {
		t.Fatal(err)
	}
	var in interner
	var got announcement
	if err := got.decode(data, &in, nil); err != nil {
		t.Fatal(err)
	}
	want := announcement{Type: annDelta, Node: "n1", Ver: 5, Puts: []Reg{reg}, Dels: []uint64{9}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("newer peer's announcement:\n got %+v\nwant %+v", got, want)
	}

	older, _ := msgpack.Marshal([]any{annBye, "n2"})
	if err := got.decode(older, &in, nil); err != nil {
		t.Fatal(err)
	}
	if want := (announcement{Type: annBye, Node: "n2"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("older peer's announcement: got %+v, want %+v", got, want)
	}
}

// TestAnnouncementDecodeErrors: wrong types and truncations are errors
// wrapping wire.ErrMalformed, never panics; every prefix of a valid
// announcement is refused.
func TestAnnouncementDecodeErrors(t *testing.T) {
	var in interner
	bad := map[string][]any{
		"type as string":     {"delta", "n1", 1},
		"node as integer":    {annDelta, 7, 1},
		"negative version":   {annDelta, "n1", -1},
		"puts as map":        {annDelta, "n1", 1, map[string]int{"a": 1}},
		"reg as string":      {annDelta, "n1", 1, []any{"reg"}},
		"mask above int64":   {annDelta, "n1", 1, []any{[]any{1, 0, "o", "c", uint64(math.MaxUint64)}}},
		"slice as integer":   {annDelta, "n1", 1, []any{[]any{1, 0, "o", "c", 0, 0, 1}}},
		"weight as string":   {annDelta, "n1", 1, []any{[]any{1, 0, "o", "c", 0, 0, true, "1"}}},
		"dels with a string": {annDelta, "n1", 1, nil, []any{1, "2"}},
	}
	for name, v := range bad {
		data, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var a announcement
		if err := a.decode(data, &in, nil); err == nil || !strings.Contains(err.Error(), wire.ErrMalformed.Error()) {
			t.Errorf("%s: decode = %v, want a malformed-msgpack error", name, err)
		}
	}
	data, err := msgpack.Marshal(&announcement{Type: annDelta, Node: "n1", Ver: 3, Puts: wireRegs, Dels: []uint64{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(data) {
		var a announcement
		if err := a.decode(data[:n], &in, nil); err == nil {
			t.Fatalf("a %d-byte prefix of a %d-byte announcement decoded", n, len(data))
		}
	}
	if err := new(announcement).decode(append(data, 0xc0), &in, nil); err == nil {
		t.Fatal("an announcement with a byte after it decoded")
	}
}

// TestInternerShares: equal names decode to one string, and the interner
// stays bounded.
func TestInternerShares(t *testing.T) {
	var in interner
	a, b := in.str([]byte("node-1")), in.str([]byte("node-1"))
	if a != "node-1" || b != a || &[]byte(a)[0] == nil {
		t.Fatalf("str = %q, %q", a, b)
	}
	if allocs := testing.AllocsPerRun(100, func() { in.str([]byte("node-1")) }); allocs != 0 {
		t.Errorf("interning a known name allocates %.0f times, want 0", allocs)
	}
	for i := range maxInterned + 10 {
		in.str([]byte(strings.Repeat("k", 1+i%200) + string(rune('a'+i%26)) + string(rune(i))))
	}
	if len(in.m) > maxInterned {
		t.Fatalf("interner holds %d strings, bound %d", len(in.m), maxInterned)
	}
}

// TestDecodeNoLaxerThanCheck: the handlers decode announcements,
// acknowledgements and table parts without wire.Check, so the decoders must refuse
// whatever Check refuses. Valid messages are mutated at random (bytes
// changed, cut, inserted); whenever a decoder accepts one, Check must too.
func TestDecodeNoLaxerThanCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var in interner
	var seeds [][]byte
	for i := range 50 {
		a := announcement{Type: annDelta, Node: "n1", Ver: uint64(i), Target: "t"}
		for j := range i % 7 {
			a.Puts = append(a.Puts, randReg(r))
			a.Dels = append(a.Dels, uint64(j))
		}
		data, err := msgpack.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		part, err := msgpack.Marshal(&tablePart{Node: "n1", Ver: uint64(i), Part: i % 3, Parts: 3, Regs: a.Puts})
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, data, appendAck(nil, ack{Node: "n2", Ver: uint64(i) << 20}), part)
	}
	accepted := 0
	for range 200_000 {
		b := slices.Clone(seeds[r.IntN(len(seeds))])
		for range 1 + r.IntN(3) {
			switch i := r.IntN(len(b)); r.IntN(3) {
			case 0:
				b[i] = byte(r.IntN(256))
			case 1:
				b = b[:i]
			default:
				b = slices.Insert(b, i, byte(r.IntN(256)))
			}
			if len(b) == 0 {
				break
			}
		}
		var a announcement
		var k ack
		var tp tablePart
		annOK := a.decode(b, &in, nil) == nil
		ackOK := k.decode(b, &in) == nil
		partOK := tp.decode(b, &in) == nil
		if (annOK || ackOK || partOK) && wire.Check(b) != nil {
			t.Fatalf("decoded %x (announcement %v, ack %v, table part %v), which Check refuses: %v", b, annOK, ackOK, partOK, wire.Check(b))
		}
		if annOK || ackOK || partOK {
			accepted++
		}
	}
	t.Logf("%d mutated messages decoded, all of them accepted by Check", accepted)
}
