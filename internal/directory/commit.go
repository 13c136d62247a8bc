package directory

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

// Pending is an announced change waiting to be applied by the peers.
type Pending struct {
	d      *Directory
	w      *waiter // nil when nobody needs to confirm
	err    error
	gaveUp bool // Wait timed out
}

// Announce changes this node's registrations (puts replace by ID) at once
// in this node's view, and queues the change for the next announcement:
// changes made while an announcement is on its way go out together in the
// next one, and the peers acknowledge them together (group commit). Callers
// that must keep several changes in order call Announce under their own
// lock, then Wait outside it.
func (d *Directory) Announce(puts []Reg, dels []uint64) *Pending {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.leaving {
		return &Pending{err: ErrClosed}
	}
	self := d.self.made(len(puts))
	for _, r := range puts {
		d.putLocked(self, d.o.Node, r)
		d.pend[r.ID] = &r
	}
	for _, id := range dels {
		if _, ok := self.m[id]; ok {
			d.delLocked(self, id)
			d.pend[id] = nil
		}
	}
	d.stats.changes.Add(1)
	select {
	case d.commitWake <- struct{}{}:
	default:
	}
	if len(d.peers) == 0 {
		// Nobody to confirm. A node that learns us before the
		// announcement goes out gets the change with our table.
		return &Pending{}
	}
	if d.next == nil {
		d.next = &waiter{done: make(chan struct{})}
	}
	d.next.callers++
	return &Pending{d: d, w: d.next}
}

// Wait waits until every peer known when the change was announced has
// applied it or left, or until timeout. A timeout is reported wrapping
// context.DeadlineExceeded; the change stays in effect and reaches the late
// peers with their next table fetch.
func (p *Pending) Wait(timeout time.Duration) error {
	if p.err != nil || p.w == nil {
		return p.err
	}
	if p.gaveUp {
		return fmt.Errorf("notifier: registration change not confirmed: %w", context.DeadlineExceeded)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.w.done:
		return p.w.err
	case <-p.d.ctx.Done():
		return ErrClosed
	case <-t.C:
		p.d.mu.Lock()
		select {
		case <-p.w.done: // confirmed just as the timer fired
			p.d.mu.Unlock()
			return p.w.err
		default:
		}
		p.gaveUp = true
		if p.w.callers--; p.w.callers == 0 {
			delete(p.d.waiters, p.w) // nobody waits for it any more
		}
		missing := len(p.w.need)
		if p.w.need == nil {
			missing = len(p.d.peers) // not even published yet
		}
		p.d.mu.Unlock()
		return fmt.Errorf("notifier: %d peers did not confirm the registration change within %v: %w",
			missing, timeout, context.DeadlineExceeded)
	}
}

// commitLinger is the least the committer waits for one announcement's
// acknowledgements before it sends the next (changes made meanwhile go out
// together then); it waits twice the recent rounds' time when that is
// longer, at most commitLingerMax. A round costs every peer the same work
// however few changes it carries: on a bus whose rounds take 100 ms (1,000
// Notifiers on 2 cores), sending the next one after 20 ms put several
// rounds of two or three changes in flight at once, each slowing the
// others.
const (
	commitLinger    = 20 * time.Millisecond
	commitLingerMax = 500 * time.Millisecond
)

// commitGather bounds how long the committer waits, after a round that
// released several callers, for them to come back with their next change:
// they then share the next round, instead of the first one back taking it
// alone and the others the one after (which halves the batches of callers
// that register in a loop). It waits at most half the last round's time,
// and never for a lone caller.
const commitGather = 50 * time.Millisecond

// committer publishes queued changes, one announcement at a time.
func (d *Directory) committer() {
	defer d.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	released := 0          // callers the last round released when it completed
	var took time.Duration // how long that round took
	var avg time.Duration  // the recent rounds' time: up at once, down slowly
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.commitWake:
		}
		if released > 1 {
			d.gather(t, released, min(took/2, commitGather))
		}
		start := time.Now()
		done, callers := d.commit()
		released = 0
		if done == nil {
			continue
		}
		linger := min(max(commitLinger, 2*avg), commitLingerMax)
		t.Reset(linger)
		select {
		case <-d.ctx.Done():
			t.Stop()
			return
		case <-done:
			released, took = callers, time.Since(start)
			if took > avg {
				avg = took // rounds got slower: follow at once
			} else {
				avg += (took - avg) / 4 // faster: a quarter at a time
			}
		case <-t.C:
			// The round outlasted the linger: the next linger is twice as
			// long, until rounds end within it.
			avg = max(avg, linger)
		}
		t.Stop()
	}
}

// gather waits, at most wait, until want callers have changes queued. t
// is the committer's stopped timer.
func (d *Directory) gather(t *time.Timer, want int, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for {
		d.mu.Lock()
		n := 0
		if d.next != nil {
			n = d.next.callers
		}
		d.mu.Unlock()
		left := time.Until(deadline)
		if n >= want || left <= 0 {
			return
		}
		t.Reset(left)
		select {
		case <-d.commitWake:
			t.Stop()
		case <-t.C:
			return
		case <-d.ctx.Done():
			t.Stop()
			return
		}
	}
}

// commit publishes the queued changes as one delta and returns a channel
// closed once every peer acknowledged it (nil if nothing was sent or
// nobody needs to), and the number of callers waiting for it.
func (d *Directory) commit() (<-chan struct{}, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pend) == 0 || d.closed {
		return nil, 0
	}
	a := announcement{Type: annDelta, Node: d.o.Node}
	for id, r := range d.pend {
		if r == nil {
			a.Dels = append(a.Dels, id)
		} else {
			a.Puts = append(a.Puts, *r)
		}
	}
	clear(d.pend)
	d.setOwnVerLocked(d.ver + 1)
	a.Ver = d.ver
	w := d.next
	d.next = nil
	d.stats.batches.Add(1)
	data, err := msgpack.Marshal(&a)
	if err == nil {
		// Published under the lock so versions go out in order.
		err = d.nc.PublishMsg(&nats.Msg{Subject: d.o.Subjects.Ann(d.o.Node), Reply: d.o.Subjects.NodeAck(d.o.Node), Data: data})
	}
	if err != nil {
		err = fmt.Errorf("notifier: announce: %w", err)
		d.o.Logger.Warn("notifier: announce", "err", err)
	}
	if w == nil || w.callers == 0 {
		return nil, 0 // nobody waits: no peer was known, or every Wait gave up
	}
	w.ver, w.err = d.ver, err
	w.need = map[string]struct{}{}
	if err == nil {
		w.need = d.needLocked()
	}
	d.waiters[w] = struct{}{}
	d.releaseLocked(w)
	return w.done, w.callers
}
