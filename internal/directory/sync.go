package directory

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/wire"
)

// errGone reports that NATS had no responders for a node's subject.
var errGone = errors.New("notifier: node gone")

// maxVerJump is the largest version step a peer's full table or heartbeat
// is believed to take without asking the node itself (a fetch): a forged
// far-future version cannot stop later genuine changes from applying.
const maxVerJump = 1 << 16

// undecodable counts and logs a directory message that cannot be used.
func (d *Directory) undecodable(what string, m *nats.Msg, err error) {
	d.stats.undecodable.Add(1)
	d.o.Logger.Warn("notifier: undecodable directory message", "what", what, "subject", m.Subject, "bytes", len(m.Data), "err", err)
}

// forged counts and logs a message in a node's name it did not send.
func (d *Directory) forged(what string, m *nats.Msg, claimed string) {
	d.stats.forged.Add(1)
	d.o.Logger.Warn("notifier: directory message ignored: not from the node it names", "what", what, "subject", m.Subject, "claims", claimed)
}

// onAnnouncement handles the changes, tables, goodbyes and drop reports of
// other nodes.
func (d *Directory) onAnnouncement(m *nats.Msg) {
	var a announcement
	err := wire.Unmarshal(m.Data, &a)
	switch {
	case err != nil:
	case !bus.ValidName(a.Node):
		err = fmt.Errorf("invalid node %q", a.Node)
	case a.Type < annHeartbeat || a.Type > annDrop:
		err = fmt.Errorf("unknown announcement type %d", a.Type)
	case a.Type == annDrop && !bus.ValidName(a.Target):
		err = fmt.Errorf("invalid drop target %q", a.Target)
	}
	if err != nil {
		d.undecodable("announcement", m, err)
		return
	}
	if subj, _ := d.o.Subjects.AnnNode(m.Subject); subj != a.Node {
		d.forged("announcement", m, a.Node)
		return
	}
	if a.Node == d.o.Node {
		d.onOwnName(&a, m)
		return
	}
	var acks []pendingAck
	reann := false
	d.mu.Lock()
	if d.closed || d.leaving {
		d.mu.Unlock()
		return
	}
	p := d.peers[a.Node]
	switch {
	case a.Type == annBye:
		d.dropLocked(a.Node, "goodbye")
		if m.Reply != "" {
			acks = append(acks, pendingAck{m.Reply, a.Ver})
		}
	case a.Type == annDrop:
		if a.Target == d.o.Node {
			reann = true // alive: say so
		} else if t := d.peers[a.Target]; t != nil && t.ver <= a.Ver {
			now := time.Now()
			switch {
			case a.Proven:
				d.dropLocked(a.Target, "reported gone by "+a.Node)
			case now.Sub(t.heard) < d.o.Expiry || d.manyUnprovenLocked(now):
				// Only unanswered probes, and we heard from it within the
				// time its prober waited, or many such reports at once (a
				// stall): the prober was wrong or too busy. Our probes, or
				// a vector comparison, still judge it.
				d.stats.dropsDoubted.Add(1)
			default:
				d.noteUnprovenLocked(now)
				d.dropLocked(a.Target, "reported gone by "+a.Node)
			}
		}
		if p == nil {
			d.repairLocked(a.Node)
		}
	case a.Type == annFull && p == nil:
		p = d.newPeerLocked(a.Node)
		d.applyFullLocked(a.Node, p, &a)
		if m.Reply != "" {
			acks = append(acks, pendingAck{m.Reply, p.ver})
		}
	case p == nil:
		if p = d.repairLocked(a.Node); p != nil {
			d.bufferLocked(p, &a, m.Reply)
		}
	case p.fetching:
		d.bufferLocked(p, &a, m.Reply)
	case a.Type == annFull && a.Ver > p.ver && a.Ver-p.ver <= maxVerJump:
		d.applyFullLocked(a.Node, p, &a)
		if m.Reply != "" {
			acks = append(acks, pendingAck{m.Reply, p.ver})
		}
	case a.Ver <= p.ver:
		if m.Reply != "" {
			acks = append(acks, pendingAck{m.Reply, p.ver})
		}
	case a.Type == annDelta && a.Ver == p.ver+1:
		d.applyLocked(a.Node, p, &a)
		if m.Reply != "" {
			acks = append(acks, pendingAck{m.Reply, p.ver})
		}
	default: // a gap: something was lost, or a forged version
		if d.limiter.takeLocked(time.Now()) {
			d.bufferLocked(p, &a, m.Reply)
			d.fetchLocked(a.Node, p)
		} else {
			d.stats.repairsSkipped.Add(1) // the probes find the gap again
		}
	}
	if p := d.peers[a.Node]; p != nil {
		p.heard = time.Now() // evidence it lives, for the probes
	}
	d.mu.Unlock()
	d.sendAcks(acks)
	if reann {
		d.askReannounce()
	}
}

// onOwnName handles a message on this node's subject: its own, echoed, or
// one it did not send (a goodbye while not leaving, or a version it never
// reached). Then it re-announces itself above the forged version, so that
// the peers replace whatever they took from the forgery.
func (d *Directory) onOwnName(a *announcement, m *nats.Msg) {
	d.mu.Lock()
	forged := false
	switch {
	case d.closed || d.leaving:
	case a.Type == annBye:
		forged = true
	case a.Type != annDrop && a.Ver > d.ver:
		forged = true
		if a.Ver-d.ver <= maxVerJump {
			d.setOwnVerLocked(a.Ver) // the re-announcement goes above it
		}
	}
	d.mu.Unlock()
	if forged {
		d.forged("announcement in this node's name", m, a.Node)
		d.askReannounce()
	}
}

func (d *Directory) newPeerLocked(node string) *peer {
	p := &peer{regs: make(map[uint64]bus.Kind)}
	d.peers[node] = p
	d.digest ^= verHash(node, 0)
	return p
}

// repairLocked starts learning a node heard of only indirectly (a message
// of a node we do not know), rate-limited. Until its table is in, the node
// is not waited for by registration changes.
func (d *Directory) repairLocked(node string) *peer {
	if d.closed || d.leaving || node == d.o.Node {
		return nil
	}
	if p := d.peers[node]; p != nil {
		return p
	}
	if !d.limiter.takeLocked(time.Now()) {
		d.stats.repairsSkipped.Add(1)
		return nil
	}
	p := d.newPeerLocked(node)
	p.unverified = true
	d.fetchLocked(node, p)
	return p
}

// maxOwed bounds the deltas buffered and the acknowledgements owed to one
// peer: a flood of far-future versions cannot grow them without bound.
const maxOwed = 1024

func (d *Directory) bufferLocked(p *peer, a *announcement, reply string) {
	if (a.Type == annDelta || a.Type == annFull) && len(p.buffered) < maxOwed {
		p.buffered = append(p.buffered, a)
	}
	if reply != "" {
		if len(p.acks) >= maxOwed {
			p.acks = p.acks[1:]
		}
		p.acks = append(p.acks, pendingAck{reply, a.Ver})
	}
}

// dueAcksLocked takes the acknowledgements owed to p that its version now
// covers; the others stay owed until a later fetch brings it further.
func (d *Directory) dueAcksLocked(p *peer) []pendingAck {
	var acks []pendingAck
	kept := p.acks[:0]
	for _, a := range p.acks {
		if a.ver <= p.ver {
			acks = append(acks, pendingAck{a.reply, p.ver})
		} else {
			kept = append(kept, a)
		}
	}
	p.acks = kept
	return acks
}

func (d *Directory) applyLocked(node string, p *peer, a *announcement) {
	p.applied = time.Now()
	for _, r := range a.Puts {
		d.putLocked(node, r)
	}
	for _, id := range a.Dels {
		d.delLocked(node, id)
	}
	d.setVerLocked(node, p, a.Ver)
}

// applyFullLocked replaces what is held of node by the table in a.
func (d *Directory) applyFullLocked(node string, p *peer, a *announcement) {
	p.applied = time.Now()
	d.replaceLocked(node, p, a.Puts, a.Ver)
}

func (d *Directory) replaceLocked(node string, p *peer, regs []Reg, ver uint64) {
	for id, k := range p.regs {
		d.tables[k].Delete(RegRef{Node: node, ID: id})
	}
	clear(p.regs)
	for _, r := range regs {
		d.putLocked(node, r)
	}
	d.setVerLocked(node, p, ver)
}

func (d *Directory) sendAcks(acks []pendingAck) {
	for _, a := range acks {
		data, err := msgpack.Marshal(&ack{Node: d.o.Node, Ver: a.ver})
		if err == nil {
			_ = d.nc.Publish(a.reply, data)
		}
	}
}

// onAck records that a peer applied our table up to a version.
func (d *Directory) onAck(m *nats.Msg) {
	var a ack
	if err := wire.Unmarshal(m.Data, &a); err != nil || !bus.ValidName(a.Node) {
		d.undecodable("ack", m, err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || a.Node == d.o.Node {
		return
	}
	p := d.peers[a.Node]
	if p == nil && d.leaving {
		return
	}
	if p == nil {
		// A member we did not know answered our hello: learn it.
		if p = d.repairLocked(a.Node); p == nil {
			return
		}
	}
	p.heard = time.Now()
	if a.Ver > p.acked {
		p.acked = a.Ver
	}
	for w := range d.waiters {
		if _, ok := w.need[a.Node]; ok && a.Ver >= w.ver {
			delete(w.need, a.Node)
			d.releaseLocked(w)
		}
	}
}

// needLocked returns the peers a change must be confirmed by: every peer
// whose table we hold (a node still being learned by a repair fetch is not
// waited for; it gets the change with our table if it asks).
func (d *Directory) needLocked() map[string]struct{} {
	need := make(map[string]struct{}, len(d.peers))
	for n, p := range d.peers {
		if !p.unverified {
			need[n] = struct{}{}
		}
	}
	return need
}
