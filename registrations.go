package notifier

import (
	"context"
	"errors"
	"fmt"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
)

// register adds or replaces a registration and waits until the bus knows it.
func (n *Notifier) register(kind bus.Kind, object string, id Match, cmd string, dest any, slice bool, weight float64) error {
	if n.closing.Load() {
		return ErrClosed
	}
	if err := checkNames(object, cmd); err != nil {
		return err
	}
	if err := checkDest(dest); err != nil {
		return err
	}
	if err := checkWeight(weight); err != nil {
		return err
	}
	n.mu.Lock()
	// Close sets closing before it collects the fan-out subscriptions under
	// n.mu: a registration that gets the lock later must not add one.
	if n.closed || n.closing.Load() {
		n.mu.Unlock()
		return ErrClosed
	}
	w, changed, err := n.registerLocked(kind, object, id, cmd, dest, slice, weight)
	if err != nil || !changed {
		n.mu.Unlock()
		return err
	}
	p := n.dir.Announce([]directory.Reg{w}, nil)
	n.mu.Unlock()
	return n.wait(p)
}

func (n *Notifier) wait(p *directory.Pending) error {
	err := p.Wait(n.o.registerTimeout)
	switch {
	case errors.Is(err, directory.ErrClosed):
		return ErrClosed
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}

// unregister removes one registration.
func (n *Notifier) unregister(kind bus.Kind, object string, id Match, cmd string, dest any) error {
	if n.closing.Load() {
		return ErrClosed
	}
	if err := checkNames(object, cmd); err != nil {
		return err
	}
	if err := checkDest(dest); err != nil {
		return err
	}
	key := regKey{kind: kind, object: object, cmd: cmd, pattern: id, dest: dest}
	n.mu.Lock()
	r := n.byKey[key]
	if r == nil {
		n.mu.Unlock()
		return fmt.Errorf("%w: %s %s %s %+v", ErrNotRegistered, kind, object, cmd, id)
	}
	n.removeLocked(r)
	p := n.dir.Announce(nil, []uint64{r.id})
	n.mu.Unlock()
	return n.wait(p)
}

// unregisterAll removes every registration of kind with destination dest.
func (n *Notifier) unregisterAll(kind bus.Kind, dest any) error {
	if n.closing.Load() {
		return ErrClosed
	}
	if err := checkDest(dest); err != nil {
		return err
	}
	n.mu.Lock()
	var ids []uint64
	for key, r := range n.byKey {
		if key.kind == kind && key.dest == dest {
			n.removeLocked(r)
			ids = append(ids, r.id)
		}
	}
	if len(ids) == 0 {
		n.mu.Unlock()
		return nil
	}
	p := n.dir.Announce(nil, ids)
	n.mu.Unlock()
	return n.wait(p)
}

func (n *Notifier) removeLocked(r *localReg) {
	slice := r.slice
	r.slice = true // no longer reached by the fan-out subject
	_ = n.syncFanLocked(r)
	n.registry.deleteLocked(r)
	n.orphaned(r, r.remove(slice), n.closed)
}

// Subscribe registers dest for every notification (object, id, cmd) whose id
// matches. When it returns nil, every Notifier on the bus routes matching
// publishes to dest. Subscribing the same (object, id, cmd, dest) again is a
// no-op; after Slice with the same key it turns the registration full.
func (n *Notifier) Subscribe(object string, id Match, cmd string, dest Subscriber) error {
	return n.register(bus.KindPub, object, id, cmd, dest, false, 0)
}

// Slice registers dest as one of the slices sharing matching notifications:
// each publish reaches exactly one matching slice bus-wide, drawn with
// probability proportional to weight. Weight 0 is standby: drawn only when
// every matching slice has weight 0. Slicing the same (object, id, cmd, dest)
// again changes its weight.
func (n *Notifier) Slice(object string, id Match, cmd string, dest Subscriber, weight float64) error {
	return n.register(bus.KindPub, object, id, cmd, dest, true, weight)
}

// Unsubscribe removes the registration (object, id, cmd, dest) made by
// Subscribe or Slice. When it returns, no further Notify call starts for it.
func (n *Notifier) Unsubscribe(object string, id Match, cmd string, dest Subscriber) error {
	return n.unregister(bus.KindPub, object, id, cmd, dest)
}

// UnsubscribeAll removes every Subscribe and Slice registration of dest. An
// unknown dest is a no-op.
func (n *Notifier) UnsubscribeAll(dest Subscriber) error {
	return n.unregisterAll(bus.KindPub, dest)
}

// RPCRegister registers dest to answer every RPC (object, id, cmd) whose id
// matches, like Subscribe.
func (n *Notifier) RPCRegister(object string, id Match, cmd string, dest Responder) error {
	return n.register(bus.KindRPC, object, id, cmd, dest, false, 0)
}

// RPCSlice registers dest as one of the weighted slices answering matching
// RPCs, like Slice: each RPC reaches exactly one matching RPC slice.
func (n *Notifier) RPCSlice(object string, id Match, cmd string, dest Responder, weight float64) error {
	return n.register(bus.KindRPC, object, id, cmd, dest, true, weight)
}

// RPCUnregister removes the registration (object, id, cmd, dest) made by
// RPCRegister or RPCSlice.
func (n *Notifier) RPCUnregister(object string, id Match, cmd string, dest Responder) error {
	return n.unregister(bus.KindRPC, object, id, cmd, dest)
}

// RPCUnregisterAll removes every RPC registration of dest. An unknown dest is
// a no-op.
func (n *Notifier) RPCUnregisterAll(dest Responder) error {
	return n.unregisterAll(bus.KindRPC, dest)
}

// registerLocked adds or replaces one registration in this Notifier,
// without announcing it: the caller announces the returned directory.Reg when
// changed is true. Arguments are validated by the caller. Called with n.mu
// locked, while the Notifier is not closing.
func (n *Notifier) registerLocked(kind bus.Kind, object string, id Match, cmd string, dest any, slice bool, weight float64) (w directory.Reg, changed bool, err error) {
	key := regKey{kind: kind, object: object, cmd: cmd, pattern: id, dest: dest}
	r, isNew := n.registry.getLocked(key, n.o.queueSize)
	if !isNew && r.slice == slice && r.weight == weight {
		return directory.Reg{}, false, nil // already registered just so
	}
	r.slice, r.weight = slice, weight
	// Subscribed before the registration is announced, so the subscription
	// reaches every server before any peer routes to it.
	if err := n.syncFanLocked(r); err != nil {
		return directory.Reg{}, false, err
	}
	n.registry.putLocked(r)
	return r.wire(), true, nil
}
