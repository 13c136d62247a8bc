package directory

import (
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Drop forgets node and its registrations, for instance when NATS reported no
// responders for it. A live node is learned again by the probes' repair.
func (d *Directory) Drop(node string) {
	d.mu.Lock()
	d.dropLocked(node, "no responders")
	d.mu.Unlock()
}

func (d *Directory) dropLocked(node, why string) {
	p, ok := d.peers[node]
	if !ok {
		return
	}
	d.forgetRegsLocked(p)
	d.digest ^= verHash(node, p.ver)
	delete(d.peers, node)
	d.ringRemoveLocked(node)
	if p.fetching {
		p.fetching = false
		close(p.fetched)
	}
	for w := range d.waiters {
		delete(w.need, node)
		d.releaseLocked(w)
	}
	d.o.Logger.Info("notifier: peer dropped", "peer", node, "reason", why)
	if d.goneWake != nil {
		d.gone = append(d.gone, node)
		select {
		case d.goneWake <- struct{}{}:
		default:
		}
	}
}

// reportGone passes dropped nodes to Options.OnPeerGone, outside the lock,
// until the Directory shuts down.
func (d *Directory) reportGone() {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.goneWake:
		}
		d.mu.Lock()
		gone := d.gone
		d.gone = nil
		d.mu.Unlock()
		for _, n := range gone {
			d.o.OnPeerGone(n)
		}
	}
}

func (d *Directory) releaseLocked(w *waiter) {
	if len(w.need) == 0 && w.need != nil {
		if _, ok := d.waiters[w]; ok {
			delete(d.waiters, w)
			close(w.done)
		}
	}
}

// askReannounce makes the loop re-announce this node (rate-limited).
func (d *Directory) askReannounce() {
	select {
	case d.reannounce <- struct{}{}:
	default:
	}
}

// doReannounce re-announces this node under a higher version, at most four
// times a Heartbeat: peers that dropped it, or took a forged message for
// its, replace what they hold.
func (d *Directory) doReannounce() {
	d.mu.RLock()
	wait := time.Until(d.lastReann.Add(d.o.Heartbeat / 4))
	d.mu.RUnlock()
	if wait > 0 && !d.sleep(wait) {
		return
	}
	d.sendReannounce(annFull)
}

func (d *Directory) sendReannounce(typ uint8) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.leaving || d.closed {
		return
	}
	d.lastReann = time.Now()
	d.stats.reannounced.Add(1)
	// Changes queued for the committer are in own already; they go out
	// with this table, and again (harmlessly) in the next delta.
	d.setOwnVerLocked(d.ver + 1)
	if typ == annFull {
		d.announceFullLocked(false)
		return
	}
	data, err := msgpack.Marshal(&announcement{Type: annHeartbeat, Node: d.o.Node, Ver: d.ver})
	if err == nil {
		_ = d.nc.Publish(d.o.Subjects.Ann(d.o.Node), data)
	}
}

// sleep waits for wait, or until the Directory shuts down, and reports whether
// it is still open.
func (d *Directory) sleep(wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.ctx.Done():
		return false
	}
}
