package directory

import (
	"hash/fnv"
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

// putLocked inserts or replaces a registration of node.
func (d *Directory) putLocked(node string, r Reg) {
	if r.Kind >= numKinds {
		return
	}
	ref := RegRef{Node: node, ID: r.ID}
	if node != d.o.Node {
		p := d.peers[node]
		if old, ok := p.regs[r.ID]; ok && old != r.Kind {
			d.tables[old].Delete(ref)
		}
		p.regs[r.ID] = r.Kind
	} else if old, ok := d.own[r.ID]; ok && old.Kind != r.Kind {
		d.tables[old.Kind].Delete(ref)
	}
	d.tables[r.Kind].Put(r.entry(node))
}

func (d *Directory) delLocked(node string, id uint64) {
	p := d.peers[node]
	if k, ok := p.regs[id]; ok {
		d.tables[k].Delete(RegRef{Node: node, ID: id})
		delete(p.regs, id)
	}
}
