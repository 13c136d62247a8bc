package notifier

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
)

// maxQueueBytes bounds the payload bytes waiting for one registration, as
// nats.go's default pending limit bounds a subscription's.
const maxQueueBytes = 64 << 20

// deliveryOverhead is what a queued notification costs besides its payload.
const deliveryOverhead = int(unsafe.Sizeof(delivery{}))

type delivery struct {
	object, cmd string
	id          int64
	args        Args
	forwarded   bool // a slice notification drawn again once already
}

// remove marks r removed and returns the notifications still queued.
func (r *localReg) remove(slice bool) []delivery {
	r.removedSlice = slice
	r.removed.Store(true)
	r.mu.Lock()
	q := r.queue
	r.queue, r.spare = nil, nil
	r.mu.Unlock()
	return q
}

// orphaned handles the notifications a removed registration had not yet
// delivered: a slice's are drawn again, once, among the slices the
// directory knows once the removal is announced (as late arrivals are, see
// reroute); a full registration's are counted as dropped (and logged).
// closed says the Notifier no longer starts goroutines.
func (n *Notifier) orphaned(r *localReg, ds []delivery, closed bool) {
	if len(ds) == 0 {
		return
	}
	if !r.removedSlice || closed {
		for range ds {
			n.dropped("registration removed with notifications queued", r)
		}
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// Unregistration announces the removal under n.mu: once this lock
		// is had, the directory no longer holds r, so r is not drawn again.
		n.mu.RLock()
		n.mu.RUnlock() //nolint:staticcheck // an empty critical section is the barrier
		for _, d := range ds {
			if d.forwarded {
				n.dropped("slice registration removed; drawn again once already", r)
				continue
			}
			switch err := n.publish(d.object, d.id, d.cmd, d.args.data, d.args.json, false, true, frame.FlagForwarded); {
			case errors.Is(err, errNoSlice):
				n.dropped("slice registration removed, no other slice left", r)
			case err != nil:
				n.dropped("redraw failed: "+err.Error(), r)
			}
		}
	}()
}

// dropped counts a dropped notification and logs at most once a second.
func (n *Notifier) dropped(why string, r *localReg) {
	n.stats.dropped.Add(1)
	now := time.Now().UnixNano()
	last := n.stats.lastDropLg.Load()
	if now-last >= int64(time.Second) && n.stats.lastDropLg.CompareAndSwap(last, now) {
		args := []any{"reason", why, "total_dropped", n.stats.dropped.Load()}
		if r != nil {
			args = append(args, "object", r.key.object, "cmd", r.key.cmd, "mask", r.key.pattern.Mask, "value", r.key.pattern.Value)
		}
		n.log.Warn("notifier: notification dropped", args...)
	}
}

// subscribeData subscribes to the subjects other Notifiers route to.
func (n *Notifier) subscribeData() error {
	pub := n.subj.NodeData(n.node, bus.KindPub)
	sub, err := n.nc.Subscribe(pub+">", func(m *nats.Msg) { n.onPub(m, len(pub)) })
	if err != nil {
		return fmt.Errorf("notifier: subscribe: %w", err)
	}
	// The Notifier bounds its own queues; nats.go's must never drop.
	_ = sub.SetPendingLimits(-1, -1)
	n.subs = append(n.subs, sub)
	rpc := n.subj.NodeData(n.node, bus.KindRPC)
	sub, err = n.nc.Subscribe(rpc+">", func(m *nats.Msg) { n.onRPC(m, len(rpc)) })
	if err != nil {
		return fmt.Errorf("notifier: subscribe: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	n.subs = append(n.subs, sub)
	return nil
}

func (n *Notifier) unsubscribe() {
	for _, s := range n.subs {
		_ = s.Unsubscribe()
	}
}

// drainData stops the data subscriptions after handling what they hold.
func (n *Notifier) drainData(deadline time.Time) error {
	if !n.nc.IsConnected() {
		return n.dropData(deadline)
	}
	// nats.go reports the end of a drain as the subscription's status
	// changing to closed: wait for that event, not on a polling loop.
	done := make([]<-chan nats.SubStatus, len(n.subs))
	for i, s := range n.subs {
		done[i] = s.StatusChanged(nats.SubscriptionClosed)
		if err := s.Drain(); err != nil {
			_ = s.Unsubscribe()
		}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	// A subscription whose connection closed under it may end without the
	// status event; it is noticed as invalid on the next safety check.
	check := time.NewTicker(100 * time.Millisecond)
	defer check.Stop()
	for i, s := range n.subs {
		for s.IsValid() {
			select {
			case <-done[i]:
			case <-check.C:
				continue
			case <-t.C:
				_ = s.Unsubscribe()
				return fmt.Errorf("notifier: close: drain %s: %w", s.Subject, ErrTimeout)
			}
			break
		}
	}
	return nil
}

// dropData ends the data subscriptions while the connection is down: a
// drain would wait for the server (nats.go flushes the unsubscription
// first) until the deadline. Nothing more arrives meanwhile, so each
// subscription's callbacks are given until the deadline to deliver what
// nats.go holds already, then it is unsubscribed. There is no event for a
// subscription's queue running empty: it is checked every 10 ms.
func (n *Notifier) dropData(deadline time.Time) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for _, s := range n.subs {
		for {
			msgs, _, perr := s.Pending()
			if perr != nil || msgs == 0 || !time.Now().Before(deadline) {
				if perr == nil && msgs > 0 && err == nil {
					err = fmt.Errorf("notifier: close: %d messages of %s undelivered while disconnected: %w", msgs, s.Subject, ErrTimeout)
				}
				break
			}
			<-tick.C
		}
		_ = s.Unsubscribe()
	}
	return err
}

// syncFanLocked gives a broadcast registration (full, every id) its own
// subscription to the fan-out subject of its (object, cmd), and takes it from
// one that is no longer broadcast. The server then delivers one copy per
// registration, and nats.go runs each subscription's callbacks one at a time
// on a goroutine of its own: Notify is called straight from there, in
// order, and a blocked Subscriber holds back only its own subscription, whose
// pending messages are bounded by the queue size (beyond, nats.go drops
// them and Stats counts the drops). Called with n.mu locked.
func (n *Notifier) syncFanLocked(r *localReg) error {
	switch want := r.broadcast(); {
	case want && r.fan == nil:
		prefix := n.subj.Fan()
		sub, err := n.nc.Subscribe(prefix+r.key.object+"."+r.key.cmd+".*", func(m *nats.Msg) { n.onFan(r, m, len(prefix)) })
		if err != nil {
			return fmt.Errorf("notifier: subscribe: %w", err)
		}
		_ = sub.SetPendingLimits(r.queueSize, maxQueueBytes)
		r.fan = sub
		n.fans[r] = struct{}{}
	case !want && r.fan != nil:
		if d, err := r.fan.Dropped(); err == nil {
			n.stats.fanDropped.Add(uint64(d))
		}
		// What nats.go still holds for it is never delivered: dropped.
		if p, _, err := r.fan.Pending(); err == nil && p > 0 {
			n.stats.fanDropped.Add(uint64(p))
		}
		_ = r.fan.Unsubscribe()
		r.fan = nil
		delete(n.fans, r)
	}
	return nil
}

// parseRouted splits a routed data message: the address after skip bytes
// of the subject, the frame header, and the body, which must be valid JSON
// (FlagJSON) or one msgpack value under wire.Check's bounds. It keeps no
// state; args shares memory with data.
func parseRouted(subject string, skip int, data []byte) (object, cmd string, id int64, f frame.Frame, args Args, err error) {
	object, cmd, id, ok := bus.ParseAddr(subject[skip:])
	if !ok {
		return "", "", 0, f, Args{}, fmt.Errorf("%w: subject %q", frame.ErrBadFrame, subject)
	}
	f, body, err := frame.ParseFrame(data)
	if err != nil {
		return "", "", 0, f, Args{}, err
	}
	isJSON := f.Flags&frame.FlagJSON != 0
	if err := checkBody(body, isJSON); err != nil {
		return "", "", 0, f, Args{}, err
	}
	return object, cmd, id, f, Args{data: body, json: isJSON}, nil
}

// onFan delivers a message of the fan-out subject to the broadcast
// registration r.
func (n *Notifier) onFan(r *localReg, m *nats.Msg, skip int) {
	_, _, id, _, args, err := parseRouted(m.Subject, skip, m.Data)
	if err != nil {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: malformed fan-out publish refused", "subject", m.Subject, "err", err)
		return
	}
	if r.removed.Load() {
		n.dropped("registration removed", r)
		return
	}
	n.notify(r, delivery{object: r.key.object, cmd: r.key.cmd, id: id, args: args})
}

// onPub handles a publish routed to this Notifier.
func (n *Notifier) onPub(m *nats.Msg, skip int) {
	object, cmd, id, f, args, err := parseRouted(m.Subject, skip, m.Data)
	if err != nil {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: malformed routed publish refused", "subject", m.Subject, "err", err)
		return
	}
	n.deliver(f.Flags, f.Slice, object, cmd, id, args)
}

// deliver queues a notification for this Notifier's matching full
// registrations (FlagFull) and for the slice registration with ID slice
// (FlagSlice).
func (n *Notifier) deliver(flags byte, slice uint64, object, cmd string, id int64, args Args) {
	d := delivery{object: object, cmd: cmd, id: id, args: args}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		n.dropped("closed", nil)
		return
	}
	var regsBuf [8]*localReg
	full, r, gone := n.registry.lookupLocked(bus.KindPub, frame.Frame{Flags: flags, Slice: slice}, object, cmd, id, regsBuf[:0])
	for _, f := range full {
		n.push(f, d)
	}
	if gone {
		n.reroute(flags, object, cmd, id, args)
		return
	}
	if r != nil {
		d.forwarded = flags&frame.FlagForwarded != 0
		n.push(r, d)
	}
}

// reroute sends on a slice notification whose registration left this
// Notifier before it arrived, drawing again among the slices the directory
// knows now. It happens at most once per notification.
func (n *Notifier) reroute(flags byte, object, cmd string, id int64, args Args) {
	if flags&frame.FlagForwarded != 0 {
		n.dropped("slice registration gone", nil)
		return
	}
	// Called with n.mu read-locked: run the send on its own goroutine so a
	// delivery to this Notifier can take the lock again.
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		switch err := n.publish(object, id, cmd, args.data, args.json, false, true, frame.FlagForwarded); {
		case errors.Is(err, errNoSlice):
			n.dropped("slice registration gone, no other slice left", nil)
		case err != nil:
			n.dropped("reroute failed: "+err.Error(), nil)
		}
	}()
}

// push appends d to r's queue, starting a drain goroutine if none runs.
// Called with n.mu read-locked and n.closed false.
func (n *Notifier) push(r *localReg, d delivery) {
	r.mu.Lock()
	size := int64(len(d.args.data) + deliveryOverhead)
	if len(r.queue)+int(r.inflight.Load()) >= r.queueSize || r.bytes.Load()+size > maxQueueBytes {
		r.mu.Unlock()
		n.dropped("queue full", r)
		return
	}
	r.queue = append(r.queue, d)
	r.bytes.Add(size)
	backlog := len(r.queue)
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		n.wg.Add(1)
		go n.drain(r)
	}
	if backlog >= 64 && (backlog%64 == 0 || backlog > r.queueSize/2) {
		// The receiving goroutine runs as long as NATS has messages for it;
		// with few cores the drain goroutine would wait for a time slice
		// while its queue fills up. Let it run.
		runtime.Gosched()
	}
}

// drain calls r's Subscriber for each queued notification, one at a time.
// It takes the whole queue at once, so the receiving goroutine and the
// drain goroutine meet on the lock once per batch, not once per message.
func (n *Notifier) drain(r *localReg) {
	defer n.wg.Done()
	var batch []delivery
	for {
		r.mu.Lock()
		if batch != nil && cap(r.spare) == 0 {
			r.spare = batch[:0] // reuse the buffer of the last batch
		}
		if len(r.queue) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		batch, r.queue, r.spare = r.queue, r.spare, nil
		r.inflight.Store(int32(len(batch)))
		r.mu.Unlock()
		for i := range batch {
			if r.removed.Load() {
				// What the batch still holds goes where the queue went.
				n.orphaned(r, append([]delivery(nil), batch[i:]...), false)
				for j := i; j < len(batch); j++ {
					batch[j] = delivery{}
				}
				r.inflight.Store(0)
				break
			}
			n.notify(r, batch[i])
			r.bytes.Add(-int64(len(batch[i].args.data) + deliveryOverhead))
			batch[i] = delivery{}
			r.inflight.Add(-1)
		}
	}
}

func (n *Notifier) notify(r *localReg, d delivery) {
	defer func() {
		if p := recover(); p != nil {
			n.stats.panics.Add(1)
			n.log.Error("notifier: Notify panicked", "object", d.object, "cmd", d.cmd, "id", d.id, "panic", p)
		}
	}()
	n.stats.delivered.Add(1)
	r.sub.Notify(d.object, d.id, d.cmd, d.args)
}
