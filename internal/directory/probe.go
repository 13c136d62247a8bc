package directory

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/wire"
)

// probeSuccessors is how many successors on the ring each node probes.
const probeSuccessors = 2

// maxRepairsPerProbe bounds the fetches and verifications one vector
// comparison starts; the rest wait for the next round.
const maxRepairsPerProbe = 32

// probeRound starts a probe of each successor not already being probed.
func (d *Directory) probeRound() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.leaving {
		return
	}
	for _, s := range d.successorsLocked(probeSuccessors) {
		p := d.peers[s]
		if !d.probing[s] {
			d.startProbeLocked(s, p.wantVector)
			p.wantVector = false
		}
	}
}

func (d *Directory) startProbeLocked(node string, vector bool) {
	if d.probing[node] {
		return
	}
	d.probing[node] = true
	d.wg.Add(1)
	go d.probe(node, vector)
}

// successorsLocked returns the k nodes that follow this one on the ring of
// node IDs in byte order, in a single pass over the peers.
func (d *Directory) successorsLocked(k int) []string {
	me := d.o.Node
	// after reports whether a comes before b on the ring starting after me.
	before := func(a, b string) bool {
		wa, wb := a <= me, b <= me // wrapped around
		if wa != wb {
			return wb
		}
		return a < b
	}
	out := make([]string, 0, k)
	for n, p := range d.peers {
		if p.unverified && p.fetching {
			continue // not known yet; its fetch tells whether it lives
		}
		i := len(out)
		for i > 0 && before(n, out[i-1]) {
			i--
		}
		if i >= k {
			continue
		}
		if len(out) < k {
			out = append(out, "")
		}
		copy(out[i+1:], out[i:len(out)-1])
		out[i] = n
	}
	return out
}

// probe asks node for its version and digest: twice at most, Expiry/2
// each. "No responders" or two unanswered probes make this node drop node
// and report the drop to all.
func (d *Directory) probe(node string, vector bool) {
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.probing, node)
		d.mu.Unlock()
	}()
	timeout := max(d.o.Expiry/2, time.Millisecond)
	for attempt := 0; attempt < 2; attempt++ {
		d.mu.RLock()
		q := probe{Node: d.o.Node, Digest: d.digest, Vector: vector}
		d.mu.RUnlock()
		data, err := msgpack.Marshal(&q)
		if err != nil {
			return
		}
		d.stats.probes.Add(1)
		ctx, cancel := context.WithTimeout(d.ctx, timeout)
		m, err := d.nc.RequestWithContext(ctx, d.o.Subjects.NodeProbe(node), data)
		cancel()
		switch {
		case d.ctx.Err() != nil:
			return
		case err == nil:
			d.onProbeReply(node, m, vector)
			return
		case errors.Is(err, nats.ErrNoResponders):
			if d.justReconnected() {
				// After a reconnect (a server restart) its interest may still
				// be on its way to our server, or it is reconnecting itself.
				return
			}
			d.reportDrop(node, "no responders to a probe")
			return
		case !d.nc.IsConnected():
			return // we cannot tell; judge after the reconnect
		}
	}
	d.reportDrop(node, "probes unanswered")
}

// reportDrop drops node and tells every node, once per drop.
func (d *Directory) reportDrop(node, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.peers[node]
	if p == nil || d.closed || d.leaving {
		return
	}
	ver := p.ver
	d.dropLocked(node, why)
	d.stats.drops.Add(1)
	data, err := msgpack.Marshal(&announcement{Type: annDrop, Node: d.o.Node, Ver: ver, Target: node})
	if err == nil {
		_ = d.nc.Publish(d.o.Subjects.Ann(d.o.Node), data)
	}
}

// onProbe answers a probe with this node's version and digest.
func (d *Directory) onProbe(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	var q probe
	if err := wire.Unmarshal(m.Data, &q); err != nil || !bus.ValidName(q.Node) {
		d.undecodable("probe", m, err)
		return
	}
	d.mu.Lock()
	if d.leaving || d.closed {
		d.mu.Unlock()
		return
	}
	r := probeReply{Node: d.o.Node, Ver: d.ver, Digest: d.digest, Knows: q.Node == d.o.Node}
	if !r.Knows {
		// A prober we do not know is learned (its fetch tells if it lives).
		r.Knows = d.peers[q.Node] != nil || d.repairLocked(q.Node) != nil
	}
	if q.Vector {
		r.Nodes = make([]string, 0, len(d.peers)+1)
		r.Vers = make([]uint64, 0, len(d.peers)+1)
		r.Nodes, r.Vers = append(r.Nodes, d.o.Node), append(r.Vers, d.ver)
		for n, p := range d.peers {
			if !p.unverified {
				r.Nodes, r.Vers = append(r.Nodes, n), append(r.Vers, p.ver)
			}
		}
	}
	d.mu.Unlock()
	if data, err := msgpack.Marshal(&r); err == nil {
		_ = d.nc.Publish(m.Reply, data)
	}
}

// onProbeReply compares a successor's answer with what this node holds. A
// version or digest that differs in two answers in a row is repaired: a
// version by fetching the successor's table, a digest by comparing the
// successor's vector of versions with ours.
func (d *Directory) onProbeReply(node string, m *nats.Msg, vector bool) {
	var r probeReply
	if err := wire.Unmarshal(m.Data, &r); err != nil || len(r.Nodes) != len(r.Vers) {
		d.undecodable("probe reply", m, err)
		return
	}
	if r.Node != node {
		d.forged("probe reply", m, r.Node)
		return
	}
	reann := !r.Knows
	d.mu.Lock()
	p := d.peers[node]
	if p == nil || d.closed || d.leaving {
		d.mu.Unlock()
		return
	}
	verOff := r.Ver != p.ver
	if verOff && p.verOff && !p.fetching {
		d.fetchLocked(node, p) // the owner's own answer is the truth
	}
	p.verOff = verOff
	digestOff := r.Digest != 0 && r.Digest != d.digest // 0: no digest
	if vector {
		d.reconcileLocked(node, r.Nodes, r.Vers)
		digestOff = false
	} else if digestOff && p.digestOff {
		p.wantVector = true // the next round asks for it
	}
	p.digestOff = digestOff
	d.mu.Unlock()
	if reann {
		d.askReannounce()
	}
}

// reconcileLocked compares a successor's vector with what this node holds:
// nodes it holds newer or we do not know are fetched from their owners;
// nodes we hold and it does not are verified with a probe of their own.
// Both are rate-limited.
func (d *Directory) reconcileLocked(from string, nodes []string, vers []uint64) {
	theirs := make(map[string]struct{}, len(nodes))
	started := 0
	for i, n := range nodes {
		if !bus.ValidName(n) {
			continue
		}
		theirs[n] = struct{}{}
		if n == d.o.Node || started >= maxRepairsPerProbe {
			continue
		}
		p := d.peers[n]
		switch {
		case p == nil:
			if d.repairLocked(n) != nil {
				started++
			}
		case vers[i] > p.ver && !p.fetching:
			if d.limiter.takeLocked(time.Now()) {
				d.fetchLocked(n, p)
				started++
			} else {
				d.stats.repairsSkipped.Add(1)
			}
		}
	}
	for n, p := range d.peers {
		if _, ok := theirs[n]; ok || n == from || p.unverified || started >= maxRepairsPerProbe {
			continue
		}
		if d.limiter.takeLocked(time.Now()) {
			d.startProbeLocked(n, false)
			started++
		} else {
			d.stats.repairsSkipped.Add(1)
		}
	}
}
