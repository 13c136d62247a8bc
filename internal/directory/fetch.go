package directory

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/internal/wire"
)

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
	regs := d.ownRegsLocked()
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
// member (with all) or of every member not known yet, returning when all
// fetches ended.
func (d *Directory) sync(ctx context.Context, all bool) error {
	members, err := d.members(ctx, all)
	if err != nil {
		return err
	}
	d.mu.Lock()
	for _, n := range members {
		if n == d.o.Node || !bus.ValidName(n) {
			continue
		}
		p := d.peers[n]
		if p == nil {
			p = d.newPeerLocked(n)
		} else if !all {
			continue
		}
		d.fetchLocked(n, p, "sync")
	}
	d.mu.Unlock()
	return d.waitFetches(ctx)
}

// members asks any one member for the member list. An empty bus answers
// "no responders" at once. A member that died unnoticed may swallow a
// request, so it is retried until the Timeout; then the bus is taken as empty
// and the probes' repair fills in what was missed. joining says whether this
// is the join (the whole bus is learned from the answer) or a resync after a
// reconnect (only members not known yet are), for the log line.
func (d *Directory) members(ctx context.Context, joining bool) ([]string, error) {
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
			uerr := wire.Unmarshal(m.Data, &l)
			if uerr == nil {
				return l.Nodes, nil
			}
			// Not from a Notifier: ask again, another member may answer.
			d.undecodable("member list", m, uerr)
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
			if joining {
				d.o.Logger.Warn("notifier: no member answered; taking the bus as empty", "err", err)
			} else {
				// After a server restart every node resyncs at once and the
				// members are busy: the peers known are kept, and the probes
				// find what changed.
				d.o.Logger.Info("notifier: no member answered the resync; keeping the peers known", "err", err)
			}
			return nil, nil
		}
	}
}

// fetchLocked starts fetching node's table unless a fetch is in flight;
// why is logged at Debug level.
func (d *Directory) fetchLocked(node string, p *peer, why string) {
	if p.fetching || d.closed {
		return
	}
	d.o.Logger.Debug("notifier: table fetch", "peer", node, "why", why)
	p.fetching, p.awaiting = true, time.Time{}
	p.fetched = make(chan struct{})
	d.stats.fetches.Add(1)
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
	retry := d.justReconnected()
	for wait := 20 * time.Millisecond; retry && errors.Is(err, errGone) && wait <= 320*time.Millisecond; wait *= 2 {
		if !d.sleep(wait) {
			return
		}
		regs, ver, err = d.fetchTable(node)
	}
	d.mu.Lock()
	if d.peers[node] != p || !p.fetching {
		d.mu.Unlock()
		return // dropped meanwhile
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && d.ctx.Err() == nil {
		// A slow answer is no proof of death: on a loaded machine dropping
		// here made live nodes re-announce and be fetched again, which loaded
		// it more. The node keeps what we hold of it and the probes judge
		// whether it lives; if it does, they compare versions and fetch
		// again. A node only heard of (unverified) is probed at once, since
		// it may be no ring successor of ours: a leaving node answers
		// neither fetch nor probe and is dropped, not kept as a ghost.
		d.stats.fetchTimeouts.Add(1)
		d.o.Logger.Info("notifier: table fetch timed out; left to the probes", "peer", node)
		p.fetching = false
		close(p.fetched)
		if p.unverified {
			d.startProbeLocked(node, false)
		}
		d.mu.Unlock()
		return
	}
	if err != nil {
		if d.ctx.Err() == nil {
			d.dropLocked(node, err.Error())
		}
		d.mu.Unlock()
		return
	}
	d.replaceLocked(node, p, regs, ver)
	p.unverified = false
	d.replayLocked(node, p)
	acks := d.dueAcksLocked(p)
	p.fetching = false
	close(p.fetched)
	d.mu.Unlock()
	d.sendAcks(acks)
}

func (d *Directory) justReconnected() bool {
	return time.Since(time.Unix(0, d.reconnected.Load())) < 2*d.o.Timeout
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

// onFetchReply passes a reply (a table part, a probe's answer) to the fetch
// or probe waiting for it.
func (d *Directory) onFetchReply(m *nats.Msg) {
	tok := strings.TrimPrefix(m.Subject, d.inbox+".")
	d.fetchMu.Lock()
	ch := d.fetchChs[tok]
	d.fetchMu.Unlock()
	if ch == nil {
		return // a late part of a fetch that gave up
	}
	select {
	case ch <- m:
	default:
		d.undecodable("reply", m, errors.New("more replies than the fetch or probe waits for"))
	}
}

// replyInbox registers a channel for the replies sent to a fresh subject
// below this node's inbox, and returns that subject. release unregisters
// it; replies arriving later are ignored.
func (d *Directory) replyInbox(size int) (subject string, ch chan *nats.Msg, release func()) {
	ch = make(chan *nats.Msg, size)
	d.fetchMu.Lock()
	d.fetchSeq++
	tok := strconv.FormatUint(d.fetchSeq, 36)
	d.fetchChs[tok] = ch
	d.fetchMu.Unlock()
	return d.inbox + "." + tok, ch, func() {
		d.fetchMu.Lock()
		delete(d.fetchChs, tok)
		d.fetchMu.Unlock()
	}
}

// fetchTable requests node's table and collects the streamed parts.
func (d *Directory) fetchTable(node string) ([]Reg, uint64, error) {
	reply, ch, release := d.replyInbox(256)
	defer release()
	if err := d.nc.PublishRequest(d.o.Subjects.NodeDir(node), reply, nil); err != nil {
		return nil, 0, err
	}
	// The timeout runs per part, not per table: a big table streamed in many
	// parts to a busy joiner keeps its fetch alive while parts keep coming.
	t := time.NewTimer(d.o.Timeout)
	defer t.Stop()
	var regs []Reg
	var ver uint64
	for got, parts := 0, 1; got < parts; got++ {
		var m *nats.Msg
		select {
		case m = <-ch:
			t.Reset(d.o.Timeout)
		case <-t.C:
			return nil, 0, fmt.Errorf("notifier: fetch table of %s: %w", node, context.DeadlineExceeded)
		case <-d.ctx.Done():
			return nil, 0, fmt.Errorf("notifier: fetch table of %s: %w", node, d.ctx.Err())
		}
		if frame.IsNoResponders(m) {
			return nil, 0, errGone
		}
		var tp tablePart
		if err := tp.decode(m.Data, &d.names); err != nil {
			d.undecodable("table part", m, err)
			return nil, 0, fmt.Errorf("notifier: undecodable table of %s: %w", node, err)
		}
		if tp.Node != node {
			d.forged("table part", m, tp.Node)
			return nil, 0, fmt.Errorf("notifier: table of %s answered by %q", node, tp.Node)
		}
		if got == 0 {
			if tp.Parts < 1 || tp.Parts > 256 {
				return nil, 0, fmt.Errorf("notifier: table of %s in %d parts", node, tp.Parts)
			}
			parts, ver = tp.Parts, tp.Ver
		} else if tp.Ver != ver || tp.Part != got {
			return nil, 0, fmt.Errorf("notifier: inconsistent table of %s", node)
		}
		regs = append(regs, tp.Regs...)
	}
	return regs, ver, nil
}

// waitFetches waits until the table fetches in flight have ended, or ctx.
func (d *Directory) waitFetches(ctx context.Context) error {
	d.mu.RLock()
	var wait []chan struct{}
	for _, p := range d.peers {
		if p.fetching {
			wait = append(wait, p.fetched)
		}
	}
	d.mu.RUnlock()
	for _, c := range wait {
		select {
		case <-c:
		case <-ctx.Done():
			return fmt.Errorf("notifier: directory sync: %w", ctx.Err())
		}
	}
	return nil
}

// tokens is a token bucket refilled by the loop; under Directory.mu.
type tokens struct {
	rate, burst float64
	have        float64
	last        time.Time
}

// takeLocked takes one token, refilling by the time passed.
func (t *tokens) takeLocked(now time.Time) bool {
	if t.last.IsZero() {
		t.have, t.last = t.burst, now
	}
	t.have = min(t.burst, t.have+now.Sub(t.last).Seconds()*t.rate)
	t.last = now
	if t.have < 1 {
		return false
	}
	t.have--
	return true
}
