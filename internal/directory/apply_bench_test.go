package directory

import (
	"fmt"
	"testing"

	"github.com/natsnotifier/notifier/bus"
)

// bareDirectory is a Directory without a connection that knows peers
// p0…p(peers-1), each with regs Subscribe-like registrations: enough for
// applyLocked.
func bareDirectory(peers, regs int) *Directory {
	d := &Directory{peers: make(map[string]*peer)}
	for i := range peers {
		node := fmt.Sprintf("p%03d-%s", i, "NUIDLIKEPADDING0123")
		p := &peer{}
		d.peers[node] = p
		for j := range regs {
			d.putLocked(p.regs.made(regs), node, Reg{ID: uint64(j + 1), Kind: bus.KindPub, Object: "obj", Cmd: "c", Mask: -1, Value: int64(j)})
		}
	}
	return d
}

// BenchmarkApplyCold measures what a registration round costs the peers of
// the bench's scale bus, where every directory shares one process: 200
// directories (each knowing 200 peers of 10 registrations) apply in turn a
// delta of 10 new registrations of one owner, so that each finds its
// tables cold. The figure is per registration per directory.
func BenchmarkApplyCold(b *testing.B) {
	const dirs, peers, regs, perRound = 200, 200, 10, 10
	ds := make([]*Directory, dirs)
	for i := range ds {
		ds[i] = bareDirectory(peers, regs)
	}
	owner := fmt.Sprintf("p%03d-%s", 0, "NUIDLIKEPADDING0123")
	a := announcement{Type: annDelta, Node: owner, Puts: make([]Reg, perRound)}
	next := uint64(1_000_000)
	round := func() {
		for k := range a.Puts {
			next++
			a.Puts[k] = Reg{ID: next, Kind: bus.KindPub, Object: "rpar", Cmd: "c", Mask: -1, Value: int64(next)}
		}
		for _, d := range ds {
			p := d.peers[owner]
			a.Ver = p.ver + 1
			d.applyLocked(owner, p, &a)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		round()
		n++
		if n%100 == 0 { // keep the tables at the bench's size
			b.StopTimer()
			for _, d := range ds {
				p := d.peers[owner]
				d.replaceLocked(owner, p, nil, p.ver+1)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*dirs*perRound), "ns/reg/dir")
}
