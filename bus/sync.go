package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

// errGone reports that NATS had no responders for a node's subject.
var errGone = errors.New("notifier: node gone")

// IsNoResponders reports whether m is the server's "503 no responders" status.
func IsNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

// onAnnouncement handles heartbeats, deltas and goodbyes of other nodes.
func (d *Directory) onAnnouncement(m *nats.Msg) {
	var a announcement
	if err := msgpack.Unmarshal(m.Data, &a); err != nil || !ValidName(a.Node) {
		d.o.Logger.Warn("notifier: undecodable announcement", "subject", m.Subject, "err", err)
		return
	}
	if a.Node == d.o.Node {
		return
	}
	var acks []pendingAck
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
	case p == nil:
		p = d.newPeerLocked(a.Node)
		d.bufferLocked(p, &a, m.Reply)
		d.fetchLocked(a.Node, p)
	case p.fetching:
		p.seen = time.Now()
		d.bufferLocked(p, &a, m.Reply)
	case a.Ver <= p.ver:
		p.seen = time.Now()
		if m.Reply != "" {
			acks = append(acks, pendingAck{m.Reply, p.ver})
		}
	case a.Type == annDelta && a.Ver == p.ver+1:
		p.seen = time.Now()
		d.applyLocked(a.Node, p, &a)
		if m.Reply != "" {
			acks = append(acks, pendingAck{m.Reply, p.ver})
		}
	default: // a gap: something was lost
		p.seen = time.Now()
		d.bufferLocked(p, &a, m.Reply)
		d.fetchLocked(a.Node, p)
	}
	d.mu.Unlock()
	d.sendAcks(acks)
}

func (d *Directory) newPeerLocked(node string) *peer {
	p := &peer{regs: make(map[uint64]Kind), seen: time.Now()}
	d.peers[node] = p
	return p
}

func (d *Directory) bufferLocked(p *peer, a *announcement, reply string) {
	if a.Type == annDelta {
		p.buffered = append(p.buffered, a)
	}
	if reply != "" {
		p.acks = append(p.acks, pendingAck{reply, a.Ver})
	}
}

func (d *Directory) applyLocked(node string, p *peer, a *announcement) {
	for _, r := range a.Puts {
		d.putLocked(node, r)
	}
	for _, id := range a.Dels {
		d.delLocked(node, id)
	}
	p.ver = a.Ver
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
	if err := msgpack.Unmarshal(m.Data, &a); err != nil {
		d.o.Logger.Warn("notifier: undecodable ack", "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || a.Node == d.o.Node || !ValidName(a.Node) {
		return
	}
	p := d.peers[a.Node]
	if p == nil && d.leaving {
		return
	}
	if p == nil {
		// A member we did not know answered our hello: learn it.
		p = d.newPeerLocked(a.Node)
		d.fetchLocked(a.Node, p)
	}
	p.seen = time.Now()
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

// onTableRequest streams this node's table to the requester.
func (d *Directory) onTableRequest(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	d.mu.RLock()
	if d.leaving {
		d.mu.RUnlock()
		return
	}
	ver := d.ver
	regs := make([]Reg, 0, len(d.own))
	for _, r := range d.own {
		regs = append(regs, r)
	}
	d.mu.RUnlock()

	// Parts stay well under the server's max payload.
	limit := int(d.nc.MaxPayload() / 2)
	var parts [][]Reg
	start, size := 0, 0
	for i, r := range regs {
		n := len(r.Object) + len(r.Cmd) + 48
		if size+n > limit && i > start {
			parts = append(parts, regs[start:i])
			start, size = i, 0
		}
		size += n
	}
	parts = append(parts, regs[start:])
	for i, part := range parts {
		data, err := msgpack.Marshal(&tablePart{Node: d.o.Node, Ver: ver, Part: i, Parts: len(parts), Regs: part})
		if err != nil {
			d.o.Logger.Error("notifier: encode table", "err", err)
			return
		}
		if err := d.nc.Publish(m.Reply, data); err != nil {
			d.o.Logger.Warn("notifier: send table", "err", err)
			return
		}
	}
}

// onMembers answers with every node this node knows, itself included.
func (d *Directory) onMembers(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	d.mu.RLock()
	l := memberList{Nodes: make([]string, 0, len(d.peers)+1)}
	l.Nodes = append(l.Nodes, d.o.Node)
	for n := range d.peers {
		l.Nodes = append(l.Nodes, n)
	}
	d.mu.RUnlock()
	if data, err := msgpack.Marshal(&l); err == nil {
		_ = d.nc.Publish(m.Reply, data)
	}
}

// sync asks one member for the member list and fetches the table of every
// member not known yet, returning when all fetches ended.
func (d *Directory) sync(ctx context.Context) error {
	members, err := d.members(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	for _, n := range members {
		if n == d.o.Node || !ValidName(n) {
			continue
		}
		p := d.peers[n]
		if p == nil {
			p = d.newPeerLocked(n)
		}
		d.fetchLocked(n, p)
	}
	d.mu.Unlock()
	return d.waitFetches(ctx)
}

// members asks any one member for the member list. An empty bus answers
// "no responders" at once. A member that died unnoticed may swallow a
// request, so it is retried until the Timeout; then the bus is taken as empty
// and heartbeats fill in what was missed.
func (d *Directory) members(ctx context.Context) ([]string, error) {
	deadline := time.Now().Add(d.o.Timeout)
	try := d.o.Timeout / 4
	empty := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, try)
		m, err := d.nc.RequestWithContext(rctx, d.o.Subjects.Members(), nil)
		cancel()
		switch {
		case err == nil:
			var l memberList
			uerr := msgpack.Unmarshal(m.Data, &l)
			if uerr == nil {
				return l.Nodes, nil
			}
			// Not from a Notifier: ask again, another member may answer.
			d.o.Logger.Warn("notifier: undecodable member list", "err", uerr)
			if time.Now().After(deadline) {
				return nil, nil
			}
		case errors.Is(err, nats.ErrNoResponders):
			// In a cluster, the members' interest may still be on its way
			// to our server (it propagates asynchronously): ask again a few
			// times over some tens of milliseconds before calling the bus empty.
			if empty >= 5 || len(d.nc.Servers()) < 2 {
				return nil, nil
			}
			empty++
			t := time.NewTimer(time.Duration(1<<empty) * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("notifier: directory sync: %w", ctx.Err())
			}
		case ctx.Err() != nil:
			return nil, fmt.Errorf("notifier: directory sync: %w", ctx.Err())
		case time.Now().After(deadline):
			d.o.Logger.Warn("notifier: no member answered; taking the bus as empty", "err", err)
			return nil, nil
		}
	}
}

// fetchLocked starts fetching node's table unless a fetch is in flight.
func (d *Directory) fetchLocked(node string, p *peer) {
	if p.fetching || d.closed {
		return
	}
	p.fetching = true
	p.fetched = make(chan struct{})
	d.wg.Add(1)
	go d.fetch(node, p)
}

func (d *Directory) fetch(node string, p *peer) {
	defer d.wg.Done()
	regs, ver, err := d.fetchTable(node)
	// Just after a reconnect, "no responders" may only mean that the node's
	// interest has not reached our server yet (a route re-forming after a
	// restart): ask a few more times, over about half a second, before giving
	// the node up. Otherwise the node is gone.
	retry := time.Since(time.Unix(0, d.reconnected.Load())) < 2*d.o.Timeout
	for wait := 20 * time.Millisecond; retry && errors.Is(err, errGone) && wait <= 320*time.Millisecond; wait *= 2 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.ctx.Done():
			t.Stop()
			return
		}
		regs, ver, err = d.fetchTable(node)
	}
	d.mu.Lock()
	if d.peers[node] != p || !p.fetching {
		d.mu.Unlock()
		return // dropped meanwhile
	}
	if err != nil {
		if d.ctx.Err() == nil {
			d.dropLocked(node, err.Error())
		}
		d.mu.Unlock()
		return
	}
	for id, k := range p.regs {
		d.tables[k].Delete(RegRef{Node: node, ID: id})
	}
	clear(p.regs)
	for _, r := range regs {
		d.putLocked(node, r)
	}
	p.ver = ver
	p.seen = time.Now()
	buffered := p.buffered
	p.buffered = nil
	slices.SortFunc(buffered, func(a, b *announcement) int { return compareU64(a.Ver, b.Ver) })
	gap := false
	for _, a := range buffered {
		switch {
		case a.Ver <= p.ver:
		case a.Ver == p.ver+1 && !gap:
			d.applyLocked(node, p, a)
		default:
			gap = true
			p.buffered = append(p.buffered, a)
		}
	}
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
	p.fetching = false
	close(p.fetched)
	if gap {
		d.fetchLocked(node, p)
	}
	d.mu.Unlock()
	d.sendAcks(acks)
}

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fetchTable requests node's table and collects the streamed parts.
func (d *Directory) fetchTable(node string) ([]Reg, uint64, error) {
	inbox := d.nc.NewInbox()
	// A small channel: SubscribeSync would allocate nats.go's default 64k
	// slots for the few parts of a table.
	ch := make(chan *nats.Msg, 256)
	sub, err := d.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, 0, err
	}
	defer sub.Unsubscribe()
	if err := d.nc.PublishRequest(d.o.Subjects.NodeDir(node), inbox, nil); err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.o.Timeout)
	defer cancel()
	var regs []Reg
	var ver uint64
	for got, parts := 0, 1; got < parts; got++ {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("notifier: fetch table of %s: %w", node, ctx.Err())
		}
		if IsNoResponders(m) {
			return nil, 0, errGone
		}
		var tp tablePart
		if err := msgpack.Unmarshal(m.Data, &tp); err != nil {
			return nil, 0, fmt.Errorf("notifier: undecodable table of %s: %w", node, err)
		}
		if got == 0 {
			parts, ver = tp.Parts, tp.Ver
		} else if tp.Ver != ver || tp.Part != got {
			return nil, 0, fmt.Errorf("notifier: inconsistent table of %s", node)
		}
		regs = append(regs, tp.Regs...)
	}
	return regs, ver, nil
}
