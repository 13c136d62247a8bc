package directory

import (
	"math/rand/v2"
	"testing"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestPeerRegistrationsChurn applies random deltas of one peer (puts, kind
// changes, deletes, puts of deleted IDs again) and checks after each that
// the tables hold exactly that peer's registrations and that the peer's ID
// list stays proportional to them; a full table and a drop then leave
// nothing of the old ones behind.
func TestPeerRegistrationsChurn(t *testing.T) {
	s := startServer(t)
	d := join(t, testenv.Connect(t, s.URL()), "n1")
	const node = "p1"
	model := map[uint64]bus.Kind{}
	held := func() map[uint64]bus.Kind {
		got := map[uint64]bus.Kind{}
		for k, tab := range d.tables {
			tab.Range(func(e Entry) bool {
				if e.Key.Node == node {
					if _, dup := got[e.Key.ID]; dup {
						t.Fatalf("registration %d held under two kinds", e.Key.ID)
					}
					got[e.Key.ID] = bus.Kind(k)
				}
				return true
			})
		}
		return got
	}
	check := func(step int) {
		t.Helper()
		got := held()
		if len(got) != len(model) {
			t.Fatalf("step %d: %d registrations held, want %d", step, len(got), len(model))
		}
		for id, k := range model {
			if got[id] != k {
				t.Fatalf("step %d: registration %d held as kind %d, want %d", step, id, got[id], k)
			}
		}
		p := d.peers[node]
		if p.nregs != len(model) {
			t.Fatalf("step %d: peer counts %d registrations, want %d", step, p.nregs, len(model))
		}
		if len(p.ids) > 2*len(model)+17 {
			t.Fatalf("step %d: ID list of %d for %d registrations", step, len(p.ids), len(model))
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
	full := announcement{Type: annFull, Node: node, Ver: p.ver + 1, Puts: []Reg{reg(1000), reg(1001)}}
	d.applyFullLocked(node, p, &full)
	model = map[uint64]bus.Kind{1000: bus.KindPub, 1001: bus.KindPub}
	check(-1)
	d.dropLocked(node, "test")
	if got := held(); len(got) != 0 {
		t.Fatalf("after the drop %d registrations of the peer are held", len(got))
	}
}
