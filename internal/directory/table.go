package directory

import (
	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/match"
)

// setOwnVerLocked sets this node's version, keeping the digest.
func (d *Directory) setOwnVerLocked(v uint64) {
	d.digest ^= verHash(d.o.Node, d.ver) ^ verHash(d.o.Node, v)
	d.ver = v
}

// setVerLocked sets the version held of a peer, keeping the digest.
func (d *Directory) setVerLocked(node string, p *peer, v uint64) {
	d.digest ^= verHash(node, p.ver) ^ verHash(node, v)
	p.ver = v
}

// verHash is one node's share of a digest: FNV-1a (64-bit) of the node's
// name followed by the version's 8 bytes, little-endian. It is computed
// here rather than by hash/fnv, whose Hash64 and the name's conversion to
// bytes allocate, twice for every announcement every peer applies.
func verHash(node string, ver uint64) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * prime
	}
	for i := range 8 {
		h = (h ^ (ver >> (8 * i) & 0xff)) * prime
	}
	return h
}

// regSet holds one node's registrations in the index, by ID: they live
// only in the index (a directory holds every registration of the bus), and
// the set finds them for replacements, deletions, drops and full tables.
// Keeping the index's items per node, rather than a bus-wide map from
// (node, ID) to entry, makes a peer's registration one probe of a small map
// instead of two of a large one: every peer inserts every registration
// while its owner waits for the acknowledgement. A Notifier numbers its
// registrations upwards, so a put above every ID the set has seen is new,
// and skips the probe for an existing one.
type regSet struct {
	m     map[uint64]regItem
	maxID uint64 // no ID above it was ever put into m
}

type regItem struct {
	it   *match.Item[RegRef]
	kind bus.Kind
}

// made returns s with its map made if it had none; size is a hint of how
// many registrations it will hold.
func (s *regSet) made(size int) *regSet {
	if s.m == nil {
		s.m = make(map[uint64]regItem, size)
	}
	return s
}

// putLocked inserts or replaces (by ID) a registration of node, whose set
// is regs.
func (d *Directory) putLocked(regs *regSet, node string, r Reg) {
	if r.Kind >= numKinds {
		return
	}
	e := r.entry(node)
	var (
		old regItem
		ok  bool
	)
	if r.ID <= regs.maxID {
		old, ok = regs.m[r.ID]
	} else {
		regs.maxID = r.ID
	}
	switch {
	case !ok:
		regs.m[r.ID] = regItem{d.index[r.Kind].Insert(e), r.Kind}
	case old.kind == r.Kind:
		d.index[r.Kind].Update(old.it, e)
	default: // moved to the other kind
		d.index[old.kind].Remove(old.it)
		regs.m[r.ID] = regItem{d.index[r.Kind].Insert(e), r.Kind}
	}
}

// ownRegsLocked returns this node's registrations, read back from the
// index: they are kept there only.
func (d *Directory) ownRegsLocked() []Reg {
	regs := make([]Reg, 0, len(d.self.m))
	for _, it := range d.self.m {
		e := it.it.Entry()
		regs = append(regs, Reg{ID: e.Key.ID, Kind: it.kind, Object: e.Object, Cmd: e.Cmd,
			Mask: e.Pattern.Mask, Value: e.Pattern.Value, Slice: e.Slice, Weight: e.Weight})
	}
	return regs
}

// delLocked deletes the registration id of node, whose set is regs.
func (d *Directory) delLocked(regs *regSet, id uint64) {
	if old, ok := regs.m[id]; ok {
		d.index[old.kind].Remove(old.it)
		delete(regs.m, id)
	}
}

// forgetRegsLocked deletes every registration of peer p from the index.
func (d *Directory) forgetRegsLocked(p *peer) {
	for _, old := range p.regs.m {
		d.index[old.kind].Remove(old.it)
	}
	p.regs = regSet{}
}
