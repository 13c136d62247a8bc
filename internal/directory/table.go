package directory

import (
	"hash/fnv"
	"slices"
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

// verHash is one node's share of a digest.
func verHash(node string, ver uint64) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(node))
	var b [8]byte
	for i := range b {
		b[i] = byte(ver >> (8 * i))
	}
	_, _ = h.Write(b[:])
	return h.Sum64()
}

// putLocked inserts or replaces a registration of node. A peer's
// registrations live in the match tables only; the peer keeps their IDs in
// a list (appended when new, compacted lazily), which a drop or a full table
// walks. A per-peer map from ID to kind, as before, cost two more lookups in
// a cold map per registration on every peer.
func (d *Directory) putLocked(node string, r Reg) {
	if r.Kind >= numKinds {
		return
	}
	ref := RegRef{Node: node, ID: r.ID}
	other := d.tables[numKinds-1-r.Kind] // the one other kind
	if node == d.o.Node {
		if old, ok := d.own[r.ID]; ok && old.Kind != r.Kind {
			other.Delete(ref)
		}
		d.tables[r.Kind].Put(r.entry(node))
		return
	}
	p := d.peers[node]
	if !d.tables[r.Kind].Put(r.entry(node)) {
		return // replaced in place
	}
	if other.Len() > 0 && other.Delete(ref) {
		return // moved from the other kind: listed already
	}
	p.ids = append(p.ids, r.ID)
	p.nregs++
	d.boundIDsLocked(node, p)
}

func (d *Directory) delLocked(node string, id uint64) {
	p := d.peers[node]
	ref := RegRef{Node: node, ID: id}
	for _, t := range d.tables {
		if t.Delete(ref) {
			p.nregs--
			d.boundIDsLocked(node, p)
			return
		}
	}
}

// forgetRegsLocked deletes every registration of node from the tables.
func (d *Directory) forgetRegsLocked(node string, p *peer) {
	for _, id := range p.ids {
		ref := RegRef{Node: node, ID: id}
		for _, t := range d.tables {
			t.Delete(ref)
		}
	}
	p.ids, p.nregs = p.ids[:0], 0
}

// boundIDsLocked keeps p's ID list within twice its registrations (plus a
// little): a compaction walks the list once it doubled, so each put and
// delete pays for it a constant share.
func (d *Directory) boundIDsLocked(node string, p *peer) {
	if len(p.ids) > 2*p.nregs+16 {
		d.compactIDsLocked(node, p)
	}
}

// compactIDsLocked drops from p's ID list the registrations deleted since
// they were listed, and the duplicates of those deleted and put again.
func (d *Directory) compactIDsLocked(node string, p *peer) {
	slices.Sort(p.ids)
	p.ids = slices.Compact(p.ids)
	kept := p.ids[:0]
	for _, id := range p.ids {
		ref := RegRef{Node: node, ID: id}
		for _, t := range d.tables {
			if _, ok := t.Get(ref); ok {
				kept = append(kept, id)
				break
			}
		}
	}
	p.ids = kept
	if cap(kept) > 2*len(kept)+16 {
		p.ids = slices.Clone(kept)
	}
}
