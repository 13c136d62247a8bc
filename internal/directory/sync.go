package directory

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
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
	bp := regsPool.Get().(*[]Reg)
	err := a.decode(m.Data, &d.names, *bp) // bounded by wire.Reader: no Check pass
	defer recyclePuts(bp, &a)
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
				d.markDroppedLocked(a.Target)
			case now.Sub(t.heard) < d.o.Expiry || d.manyUnprovenLocked(now) || d.justReconnected():
				// Only unanswered probes, and we heard from it within the
				// time its prober waited, or many such reports at once (a
				// stall), or we reconnected a moment ago (after a server
				// restart the refutation may take seconds to come): the
				// prober was wrong or too busy. Our probes, or a vector
				// comparison, still judge it.
				d.stats.dropsDoubted.Add(1)
			default:
				d.noteUnprovenLocked(now)
				d.suspectLocked(a.Target, t, "reported gone by "+a.Node, now)
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
		if p = d.repairLocked(a.Node); p != nil && !p.awaiting.IsZero() {
			acks = d.awaitLocked(a.Node, p, &a, m.Reply)
		} else if p != nil {
			d.bufferLocked(p, &a, m.Reply)
		}
	case p.fetching:
		d.bufferLocked(p, &a, m.Reply)
	case !p.awaiting.IsZero():
		acks = d.awaitLocked(a.Node, p, &a, m.Reply)
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
			d.fetchLocked(a.Node, p, "version gap")
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
	p := &peer{}
	d.peers[node] = p
	d.ringAddLocked(node)
	d.digest ^= verHash(node, 0)
	return p
}

// repairLocked starts learning a node heard of only indirectly (a message
// of a node we do not know), rate-limited. Until its table is in, the node
// is not waited for by registration changes. A node dropped on a drop
// report a moment ago is not fetched from but awaited (see awaitLocked): it
// heard the report too and re-announces its table to every node at once,
// where a fetch by each node that dropped it would load it N times over.
func (d *Directory) repairLocked(node string) *peer {
	if d.closed || d.leaving || node == d.o.Node {
		return nil
	}
	if p := d.peers[node]; p != nil {
		return p
	}
	if t, ok := d.dropped[node]; ok && time.Since(t) < d.rejoinMemory() {
		p := d.newPeerLocked(node)
		p.unverified = true
		p.awaiting = time.Now()
		return p
	}
	if !d.limiter.takeLocked(time.Now()) {
		d.stats.repairsSkipped.Add(1)
		return nil
	}
	p := d.newPeerLocked(node)
	p.unverified = true
	d.fetchLocked(node, p, "unknown node")
	return p
}

// suspectLocked makes p (node) a suspect on a drop report for unanswered
// probes: it is dropped after refuteGrace unless heard from meanwhile. The
// node hears the report too and re-announces itself, which refutes it; so a
// node that was only slow (a GC pause, a starved process) is not dropped by
// the whole bus, and traffic to it is not lost meanwhile.
func (d *Directory) suspectLocked(node string, p *peer, why string, now time.Time) {
	if !p.suspected.IsZero() {
		return // one judgement at a time
	}
	p.suspected = now
	postponed := 0
	since, busy0, sched0 := now, gcBusy(), schedSnapshot()
	var judge func()
	judge = func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.closed || d.leaving || d.peers[node] != p || !p.suspected.Equal(now) {
			return // dropped, replaced or judged meanwhile
		}
		if p.heard.After(now) {
			p.suspected = time.Time{}
			d.stats.refuted.Add(1)
			return
		}
		if d.justReconnected() {
			// We reconnected meanwhile: the refutation may be seconds away.
			p.suspected = time.Time{}
			d.stats.dropsDoubted.Add(1)
			return
		}
		if postponed < maxRefutePostpone && (d.announcementsQueued() || gcStarved(busy0, since) || schedLagged(sched0, d.refuteGrace()/2)) {
			// The refutation may be among the announcements not handled
			// yet, or this process spent the grace collecting garbage: a
			// loaded node reads them late, not the suspect.
			postponed++
			since, busy0, sched0 = time.Now(), gcBusy(), schedSnapshot()
			time.AfterFunc(d.refuteGrace(), judge)
			return
		}
		p.suspected = time.Time{}
		d.dropLocked(node, why+", not refuted")
		d.markDroppedLocked(node)
	}
	time.AfterFunc(d.refuteGrace(), judge)
}

// refuteGrace is how long a suspect has to refute a drop report: half the
// Expiry, so that a frozen node is still dropped by every node well within
// two Expiries of its last answer. The judgement waits up to
// maxRefutePostpone more graces while announcements wait unread or the
// garbage collector took over a quarter of the processors.
func (d *Directory) refuteGrace() time.Duration { return d.o.Expiry / 2 }

const maxRefutePostpone = 2

// announcementsQueued reports whether announcements wait in this node's
// subscription, not handled yet.
func (d *Directory) announcementsQueued() bool {
	if d.anns == nil {
		return false
	}
	n, _, err := d.anns.Pending()
	return err == nil && n > 0
}

// maxDropped bounds the drop marks held (Directory.dropped); a drop beyond
// it is repaired by a fetch, as before the marks.
const maxDropped = 4096

// rejoinMemory is how long a drop mark lasts: a node falsely dropped is
// heard from again within a probe round or two.
func (d *Directory) rejoinMemory() time.Duration {
	return 4 * max(d.o.Heartbeat, d.o.Expiry)
}

// awaitWindow is how long a node heard from after a reported drop is given
// to re-announce itself before its table is fetched: on a loaded bus the
// re-announcement comes late, and a fetch by every node that dropped it
// would come later still (and load it most).
func (d *Directory) awaitWindow() time.Duration {
	return max(2*d.o.Expiry, d.o.Timeout)
}

// markDroppedLocked notes that node was dropped on a drop report, which
// the node hears as well.
func (d *Directory) markDroppedLocked(node string) {
	if _, ok := d.dropped[node]; ok || len(d.dropped) < maxDropped {
		d.dropped[node] = time.Now()
	}
}

// awaitLocked handles a message of a node heard from again after a
// reported drop. Its whole table (the re-announcement) ends the wait and
// releases the acknowledgements owed; anything else is kept until then. A
// heartbeat (a table too large for one message) or a wait longer than
// awaitWindow makes this node fetch the table after all, rate-limited; so
// does the probe round (sweepDroppedLocked) if the node goes quiet.
func (d *Directory) awaitLocked(node string, p *peer, a *announcement, reply string) []pendingAck {
	if a.Type != annFull {
		d.bufferLocked(p, a, reply)
		if a.Type == annHeartbeat || time.Since(p.awaiting) > d.awaitWindow() {
			d.fetchAwaitedLocked(node, p)
		}
		return nil
	}
	d.stats.rejoins.Add(1)
	p.awaiting, p.unverified = time.Time{}, false
	d.applyFullLocked(node, p, a)
	d.replayLocked(node, p)
	if reply != "" {
		p.acks = append(p.acks, pendingAck{reply, a.Ver})
	}
	return d.dueAcksLocked(p)
}

func (d *Directory) fetchAwaitedLocked(node string, p *peer) {
	if d.limiter.takeLocked(time.Now()) {
		d.fetchLocked(node, p, "awaited after a drop")
	} else {
		d.stats.repairsSkipped.Add(1)
	}
}

// sweepDroppedLocked fetches the tables of nodes awaited longer than
// awaitWindow and forgets drop marks older than rejoinMemory.
func (d *Directory) sweepDroppedLocked(now time.Time) {
	for n, t := range d.dropped {
		p := d.peers[n]
		switch {
		case p != nil && !p.awaiting.IsZero():
			if now.Sub(p.awaiting) > d.awaitWindow() && !p.fetching {
				d.fetchAwaitedLocked(n, p)
			}
		case now.Sub(t) > d.rejoinMemory():
			delete(d.dropped, n)
		}
	}
}

// replayLocked applies, in version order, the deltas and tables of p
// buffered while its table was being learned.
func (d *Directory) replayLocked(node string, p *peer) {
	buffered := p.buffered
	p.buffered = nil
	slices.SortFunc(buffered, func(a, b *announcement) int { return compareU64(a.Ver, b.Ver) })
	for _, a := range buffered {
		switch {
		case a.Ver <= p.ver:
		case a.Type == annFull && a.Ver-p.ver <= maxVerJump:
			d.applyFullLocked(node, p, a)
		case a.Type == annDelta && a.Ver == p.ver+1:
			d.applyLocked(node, p, a)
		}
		// Anything beyond a gap is dropped, not fetched for again: the
		// owner just said what it holds, and the probes compare versions
		// once a round. A forged far-future version ends here.
	}
}

// maxOwed bounds the deltas buffered and the acknowledgements owed to one
// peer: a flood of far-future versions cannot grow them without bound.
const maxOwed = 1024

func (d *Directory) bufferLocked(p *peer, a *announcement, reply string) {
	if (a.Type == annDelta || a.Type == annFull) && len(p.buffered) < maxOwed {
		a.retained = true
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
	regs := p.regs.made(len(a.Puts))
	for _, r := range a.Puts {
		d.putLocked(regs, node, r)
	}
	for _, id := range a.Dels {
		d.delLocked(regs, id)
	}
	d.setVerLocked(node, p, a.Ver)
}

// applyFullLocked replaces what is held of node by the table in a.
func (d *Directory) applyFullLocked(node string, p *peer, a *announcement) {
	p.applied = time.Now()
	d.replaceLocked(node, p, a.Puts, a.Ver)
}

func (d *Directory) replaceLocked(node string, p *peer, regs []Reg, ver uint64) {
	d.forgetRegsLocked(p)
	set := p.regs.made(len(regs))
	for _, r := range regs {
		d.putLocked(set, node, r)
	}
	d.setVerLocked(node, p, ver)
}

func (d *Directory) sendAcks(acks []pendingAck) {
	var buf [64]byte
	for _, a := range acks {
		// Publish copies the data: one buffer serves every ack.
		_ = d.nc.Publish(a.reply, appendAck(buf[:0], ack{Node: d.o.Node, Ver: a.ver}))
	}
}

// onAck records that a peer applied our table up to a version.
func (d *Directory) onAck(m *nats.Msg) {
	var a ack
	err := a.decode(m.Data, &d.names) // bounded by wire.Reader: no Check pass
	if err != nil || !bus.ValidName(a.Node) {
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
	p.heard, p.answered = time.Now(), true
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
// whose table we hold, and every peer still being learned by a repair fetch
// that has acknowledged one of our announcements: it knows us, so it
// applies our changes (a joiner that learned a member only from its
// answer to the hello, because the member list it got lacked it, must not
// return from a registration before that member routes to it). A node
// only heard of, which never answered us, is not waited for: it may not
// know us, and learns our table by a rate-limited fetch, with the change.
func (d *Directory) needLocked() map[string]struct{} {
	need := make(map[string]struct{}, len(d.peers))
	for n, p := range d.peers {
		if !p.unverified || p.answered {
			need[n] = struct{}{}
		}
	}
	return need
}
