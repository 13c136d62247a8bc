package directory

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestPeerRegistrationsChurn applies random deltas of one peer (puts, kind
// changes, deletes, puts of deleted IDs again) and checks after each that
// the index holds exactly that peer's registrations, each once and under
// its kind, and that the peer's set agrees; a full table and a drop then
// leave nothing of the old ones behind.
func TestPeerRegistrationsChurn(t *testing.T) {
	s := startServer(t)
	d := join(t, testenv.Connect(t, s.URL()), "n1")
	const node = "p1"
	model := map[uint64]bus.Kind{}
	// held reads the index itself: every registration of the test matches
	// id 0 or id 1 of ("o", "c").
	held := func() map[uint64]bus.Kind {
		got := map[uint64]bus.Kind{}
		for k := range d.index {
			for _, id := range []int64{0, 1} {
				full, _ := d.index[k].Lookup("o", "c", id, nil, nil)
				for _, e := range full {
					if e.Key.Node != node {
						continue
					}
					if _, dup := got[e.Key.ID]; dup {
						t.Fatalf("registration %d held twice", e.Key.ID)
					}
					got[e.Key.ID] = bus.Kind(k)
				}
			}
		}
		return got
	}
	check := func(step int) {
		t.Helper()
		got := held()
		if len(got) != len(model) {
			t.Fatalf("step %d: %d registrations held, want %d", step, len(got), len(model))
		}
		p := d.peers[node]
		for id, k := range model {
			if got[id] != k {
				t.Fatalf("step %d: registration %d held as kind %d, want %d", step, id, got[id], k)
			}
			if it, ok := p.regs.m[id]; !ok || it.kind != k || it.it.Entry().Key != (RegRef{Node: node, ID: id}) {
				t.Fatalf("step %d: the peer's set has %+v for registration %d of kind %d", step, it, id, k)
			}
		}
		if len(p.regs.m) != len(model) {
			t.Fatalf("step %d: the peer's set has %d registrations, want %d", step, len(p.regs.m), len(model))
		}
		if n := d.index[bus.KindPub].Len() + d.index[bus.KindRPC].Len(); n != len(model) {
			t.Fatalf("step %d: the index holds %d entries, want %d", step, n, len(model))
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.newPeerLocked(node)
	for step := range 3000 {
		a := announcement{Type: annDelta, Node: node, Ver: p.ver + 1}
		for range r.IntN(6) {
			id := uint64(r.IntN(200))
			k := bus.Kind(r.IntN(int(numKinds)))
			a.Puts = append(a.Puts, Reg{ID: id, Kind: k, Object: "o", Cmd: "c", Mask: 1, Value: int64(id % 2)})
		}
		for range r.IntN(8) {
			a.Dels = append(a.Dels, uint64(r.IntN(200)))
		}
		d.applyLocked(node, p, &a)
		for _, reg := range a.Puts {
			model[reg.ID] = reg.Kind
		}
		for _, id := range a.Dels {
			delete(model, id)
		}
		check(step)
	}
	full := announcement{Type: annFull, Node: node, Ver: p.ver + 1, Puts: []Reg{
		{ID: 1000, Kind: bus.KindPub, Object: "o", Cmd: "c", Mask: 1},
		{ID: 1001, Kind: bus.KindPub, Object: "o", Cmd: "c", Mask: 1, Value: 1},
	}}
	d.applyFullLocked(node, p, &full)
	model = map[uint64]bus.Kind{1000: bus.KindPub, 1001: bus.KindPub}
	check(-1)
	d.dropLocked(node, "test")
	if got := held(); len(got) != 0 {
		t.Fatalf("after the drop %d registrations of the peer are held", len(got))
	}
}

// TestSuccessorsRing checks the probe ring kept sorted as peers come and
// go against a sort of every peer: the k IDs after this node's, wrapping
// around, skipping nodes whose first fetch is in flight.
func TestSuccessorsRing(t *testing.T) {
	s := startServer(t)
	d := join(t, testenv.Connect(t, s.URL()), "n5")
	r := rand.New(rand.NewPCG(7, 8))
	d.mu.Lock()
	defer d.mu.Unlock()
	want := func(k int) []string {
		var after, before []string
		for n, p := range d.peers {
			if p.unverified && p.fetching {
				continue
			}
			if n > d.o.Node {
				after = append(after, n)
			} else {
				before = append(before, n)
			}
		}
		slices.Sort(after)
		slices.Sort(before)
		all := append(after, before...)
		return all[:min(k, len(all))]
	}
	for step := range 2000 {
		name := fmt.Sprintf("n%d", r.IntN(60))
		switch p := d.peers[name]; {
		case name == d.o.Node:
		case p == nil:
			p = d.newPeerLocked(name)
			p.unverified, p.fetching = r.IntN(8) == 0, r.IntN(2) == 0
			if p.fetching {
				p.fetched = make(chan struct{})
			}
		default:
			d.dropLocked(name, "test")
		}
		for _, k := range []int{1, 2, 3} {
			if got, w := d.successorsLocked(k), want(k); !slices.Equal(got, w) {
				t.Fatalf("step %d: successors(%d) = %v, want %v", step, k, got, w)
			}
		}
		if len(d.ring) != len(d.peers) || !slices.IsSorted(d.ring) {
			t.Fatalf("step %d: ring %v for %d peers", step, d.ring, len(d.peers))
		}
	}
}

// TestVerHashIsFNV1a checks verHash against hash/fnv over the name and the
// version's little-endian bytes: the digests of peers built before it was
// written out must agree with it.
func TestVerHashIsFNV1a(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := range 1000 {
		name := fmt.Sprintf("n%04d-%016x", i, r.Uint64())[:1+r.IntN(21)]
		ver := r.Uint64() >> r.IntN(64)
		h := fnv.New64a()
		h.Write([]byte(name))
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], ver)
		h.Write(b[:])
		if got, want := verHash(name, ver), h.Sum64(); got != want {
			t.Fatalf("verHash(%q, %d) = %#x, want %#x", name, ver, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = verHash("node", 7) }); n != 0 {
		t.Fatalf("verHash allocates %v times", n)
	}
}
