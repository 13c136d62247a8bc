package directory

import (
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
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
	d.sweepDroppedLocked(time.Now())
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
// node IDs in byte order. The ring is kept sorted as peers come and go:
// walking the peers map each round cost every node O(N) a second, and a
// process hosting many nodes (the bench's 1,000) a tenth of its CPU.
func (d *Directory) successorsLocked(k int) []string {
	out := make([]string, 0, k)
	n := len(d.ring)
	start, _ := slices.BinarySearch(d.ring, d.o.Node) // first ID after this node's (never in the ring)
	for i := 0; i < n && len(out) < k; i++ {
		node := d.ring[(start+i)%n]
		if p := d.peers[node]; p != nil && p.unverified && p.fetching {
			continue // not known yet; its fetch tells whether it lives
		}
		out = append(out, node)
	}
	return out
}

// ringAddLocked and ringRemoveLocked keep d.ring, the sorted IDs of the
// peers, in step with d.peers.
func (d *Directory) ringAddLocked(node string) {
	if i, found := slices.BinarySearch(d.ring, node); !found {
		d.ring = slices.Insert(d.ring, i, node)
	}
}

func (d *Directory) ringRemoveLocked(node string) {
	if i, found := slices.BinarySearch(d.ring, node); found {
		d.ring = slices.Delete(d.ring, i, i+1)
	}
}

// probe asks node for its version and digest: twice at most, each waiting
// probeTimeout, and an answer to either probe counts (both carry the same
// reply subject, so a late answer to the first still ends the second).
// "No responders" makes this node drop node and report the drop to all; so
// do two unanswered probes, unless node was heard from meanwhile (an
// acknowledgement, an announcement, a probe of its own): a node that talks
// lives, however late it answers on a loaded machine.
func (d *Directory) probe(node string, vector bool) {
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.probing, node)
		d.mu.Unlock()
	}()
	reply, ch, release := d.replyInbox(2)
	defer release()
	timeout := d.probeTimeout()
	t := time.NewTimer(timeout)
	defer t.Stop()
	start, busy0, sched0 := time.Now(), gcBusy(), schedSnapshot()
	var late time.Duration // how much later than asked the timer woke us, at most
	for attempt := 0; attempt < 2; attempt++ {
		d.mu.RLock()
		q := probe{Node: d.o.Node, Digest: d.digest, Vector: vector}
		d.mu.RUnlock()
		data, err := msgpack.Marshal(&q)
		if err != nil {
			return
		}
		d.stats.probes.Add(1)
		sent := time.Now()
		if err := d.nc.PublishRequest(d.o.Subjects.NodeProbe(node), reply, data); err != nil {
			return // closed, or disconnected and not buffering: judge later
		}
		t.Reset(timeout)
		due := time.Now().Add(timeout)
		select {
		case <-d.ctx.Done():
			return
		case m := <-ch:
			if !frame.IsNoResponders(m) {
				d.observeRTT(time.Since(sent))
				d.onProbeReply(node, m, vector)
				return
			}
			if d.justReconnected() {
				// After a reconnect (a server restart) its interest may still
				// be on its way to our server, or it is reconnecting itself.
				return
			}
			d.reportDrop(node, "no responders to a probe")
			return
		case <-t.C:
			late = max(late, time.Since(due))
		}
		if !d.nc.IsConnected() {
			return // we cannot tell; judge after the reconnect
		}
	}
	// Nor is it judged right after a reconnect (a server restart): every
	// node of the bus reconnects and resyncs at once, the server is busy
	// for seconds, and unanswered probes then say nothing of the successor.
	// A node that died meanwhile is found once the grace (2×Timeout) is
	// over.
	if d.heardSince(node, start) || d.starved(late, timeout) || gcStarved(busy0, start) || schedLagged(sched0, timeout/2) || d.justReconnected() {
		d.stats.probesLate.Add(1)
		return // alive but slow, or we cannot tell: the next round probes it again
	}
	d.reportDrop(node, "probes unanswered")
}

// probeTimeout is how long one probe waits for its answer: Expiry/2, or
// four times the smoothed round trip of this node's answered probes when
// that is longer (a loaded machine answers late, not never), at most
// Expiry. Two probes unanswered thus take Expiry on an idle machine and at
// most 2×Expiry on a loaded one.
func (d *Directory) probeTimeout() time.Duration {
	base := max(d.o.Expiry/2, time.Millisecond)
	if rtt := 4 * time.Duration(d.srtt.Load()); rtt > base {
		return min(rtt, max(d.o.Expiry, base))
	}
	return base
}

// observeRTT folds the round trip of an answered probe into the smoothed
// round trip (weight 1/8, as TCP's).
func (d *Directory) observeRTT(rtt time.Duration) {
	for {
		old := d.srtt.Load()
		next := int64(rtt)
		if old != 0 {
			next = old + (int64(rtt)-old)/8
		}
		if d.srtt.CompareAndSwap(old, next) {
			return
		}
	}
}

// starved reports whether this node was too busy to judge a probe (see
// also gcStarved): the
// timer woke it more than half a timeout late, or replies wait undelivered
// in its inbox (the answer may be among them). On a saturated machine every
// message is late, the successor's answer as much as its other messages;
// dropping it then only adds a drop, a re-announcement and fetches to the
// load.
func (d *Directory) starved(late, timeout time.Duration) bool {
	if late > timeout/2 {
		return true
	}
	if d.replies != nil {
		if msgs, _, err := d.replies.Pending(); err == nil && msgs > 0 {
			return true
		}
	}
	return false
}

// heardSince reports whether node sent this node anything after t.
func (d *Directory) heardSince(node string, t time.Time) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	p := d.peers[node]
	return p != nil && p.heard.After(t)
}

// streamingLocked reports whether p's deltas keep arriving (one applied
// within two Heartbeats): then being behind is lag, and a lost delta shows
// as a gap in the next one. Version repairs are for a node gone quiet after
// a lost delta; fetching the table of a node that is busy registering only
// adds load, and on a saturated machine adds it from every peer at once.
func (d *Directory) streamingLocked(p *peer) bool {
	return time.Since(p.applied) < 2*d.o.Heartbeat
}

// maxUnproven is how many drops for unanswered probes (this node's and
// those reported to it) may fall within two Heartbeats before further ones
// are doubted: one frozen process makes one or two, a stall of the whole
// bus (a long GC pause of a process hosting many nodes, a paused VM) makes
// one per node, and following them all would drop the whole bus and make
// every node re-announce itself to every other: N² messages.
const maxUnproven = 3

// manyUnprovenLocked reports whether maxUnproven drops for unanswered
// probes fell within the last two Heartbeats.
func (d *Directory) manyUnprovenLocked(now time.Time) bool {
	n := 0
	for _, t := range d.unproven {
		if now.Sub(t) < 2*d.o.Heartbeat {
			n++
		}
	}
	return n >= maxUnproven
}

// noteUnprovenLocked records a drop for unanswered probes, keeping the last
// few.
func (d *Directory) noteUnprovenLocked(now time.Time) {
	if len(d.unproven) >= 2*maxUnproven {
		d.unproven = d.unproven[1:]
	}
	d.unproven = append(d.unproven, now)
}

// reportDrop drops node and tells every node, once per drop.
func (d *Directory) reportDrop(node, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.peers[node]
	if p == nil || d.closed || d.leaving {
		return
	}
	proven := why != "probes unanswered"
	if !proven && d.manyUnprovenLocked(time.Now()) {
		// Several nodes went silent at once: more likely the bus (or this
		// machine) stalled than they all froze. Judge again next round.
		d.stats.probesLate.Add(1)
		return
	}
	if !proven {
		d.noteUnprovenLocked(time.Now())
	}
	ver := p.ver
	d.dropLocked(node, why)
	d.markDroppedLocked(node)
	d.stats.drops.Add(1)
	data, err := msgpack.Marshal(&announcement{Type: annDrop, Node: d.o.Node, Ver: ver, Target: node, Proven: proven})
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
	if p := d.peers[q.Node]; p != nil {
		p.heard = time.Now()
	}
	r := probeReply{Node: d.o.Node, Ver: d.ver, Digest: d.digest, Knows: q.Node == d.o.Node}
	if !r.Knows {
		// A prober we do not know is learned (its fetch tells if it lives).
		// One awaited after a drop is told we lack its table, so that it
		// re-announces even if it missed the drop report.
		p := d.repairLocked(q.Node)
		r.Knows = p != nil && p.awaiting.IsZero()
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
	p.heard = time.Now()
	// The owner's own answer is the truth, but a version that moves on
	// while its deltas are on their way differs in every answer. So fetch
	// only when the version of the last answer is still not the one we hold
	// and this answer differs too: a delta was lost (or a version forged).
	verOff := r.Ver != p.ver
	if verOff && p.verOff && p.claimed != p.ver && !p.fetching && !d.streamingLocked(p) {
		d.fetchLocked(node, p, "probe answer: version behind")
	}
	p.verOff, p.claimed = verOff, r.Ver
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
// nodes we do not know are fetched from their owners, and so are nodes it
// holds newer twice in a row (the second vector still newer than what we
// held at the first: not just deltas on their way); nodes we hold and it
// does not are verified with a probe of their own. All are rate-limited.
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
		case vers[i] <= p.ver:
			p.vecBehind = 0
		case p.vecBehind <= p.ver:
			// Newer there: the deltas may be on their way. Fetch only if
			// the next vector finds us still behind this one.
			p.vecBehind = vers[i]
		case !p.fetching && !d.streamingLocked(p):
			p.vecBehind = vers[i]
			if d.limiter.takeLocked(time.Now()) {
				d.fetchLocked(n, p, "vector: version behind")
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
