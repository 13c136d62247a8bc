package notifier

import (
	"fmt"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
)

// Batch collects registrations to add together. Commit makes them all in
// one step: one directory announcement and one round of acknowledgements
// for the whole batch, however many registrations it holds, instead of one
// per call. When Commit returns nil, every Notifier on the bus routes to
// every registration of the batch (as for Subscribe; see the package doc).
//
// The methods of a Batch mirror Subscribe, Slice, RPCRegister and RPCSlice
// and return the Batch, so calls chain. A Batch is not safe for concurrent
// use; it may be reused after Commit.
type Batch struct {
	n   *Notifier
	ops []batchOp
}

type batchOp struct {
	kind        bus.Kind
	object, cmd string
	id          Match
	dest        any
	slice       bool
	weight      float64
}

// Batch returns an empty batch of registrations for n.
func (n *Notifier) Batch() *Batch { return &Batch{n: n} }

// Subscribe adds a Subscribe to the batch.
func (b *Batch) Subscribe(object string, id Match, cmd string, dest Subscriber) *Batch {
	return b.add(batchOp{kind: bus.KindPub, object: object, cmd: cmd, id: id, dest: dest})
}

// Slice adds a Slice to the batch.
func (b *Batch) Slice(object string, id Match, cmd string, dest Subscriber, weight float64) *Batch {
	return b.add(batchOp{kind: bus.KindPub, object: object, cmd: cmd, id: id, dest: dest, slice: true, weight: weight})
}

// RPCRegister adds an RPCRegister to the batch.
func (b *Batch) RPCRegister(object string, id Match, cmd string, dest Responder) *Batch {
	return b.add(batchOp{kind: bus.KindRPC, object: object, cmd: cmd, id: id, dest: dest})
}

// RPCSlice adds an RPCSlice to the batch.
func (b *Batch) RPCSlice(object string, id Match, cmd string, dest Responder, weight float64) *Batch {
	return b.add(batchOp{kind: bus.KindRPC, object: object, cmd: cmd, id: id, dest: dest, slice: true, weight: weight})
}

// Len returns the number of registrations in the batch.
func (b *Batch) Len() int { return len(b.ops) }

func (b *Batch) add(op batchOp) *Batch {
	b.ops = append(b.ops, op)
	return b
}

// Commit validates every registration of the batch first: if one is
// invalid (a name, destination or weight), nothing is registered and the
// error names it. Otherwise it registers them all, as the single calls
// would (a registration already made just so is left alone), and waits
// until the bus knows them: the error then wraps ErrTimeout or ErrClosed as
// for Subscribe. The batch is empty afterwards.
func (b *Batch) Commit() error {
	n := b.n
	ops := b.ops
	b.ops = nil
	if n.closing.Load() {
		return ErrClosed
	}
	for i, op := range ops {
		if err := checkNames(op.object, op.cmd); err != nil {
			return fmt.Errorf("batch entry %d: %w", i, err)
		}
		if err := checkDest(op.dest); err != nil {
			return fmt.Errorf("batch entry %d: %w", i, err)
		}
		if err := checkWeight(op.weight); err != nil {
			return fmt.Errorf("batch entry %d: %w", i, err)
		}
		if _, ok := op.dest.(Subscriber); op.kind == bus.KindPub && !ok {
			return fmt.Errorf("batch entry %d: %w: %T is not a Subscriber", i, ErrInvalidDestination, op.dest)
		}
		if _, ok := op.dest.(Responder); op.kind == bus.KindRPC && !ok {
			return fmt.Errorf("batch entry %d: %w: %T is not a Responder", i, ErrInvalidDestination, op.dest)
		}
	}
	n.mu.Lock()
	if n.closed || n.closing.Load() {
		n.mu.Unlock()
		return ErrClosed
	}
	var puts []directory.Reg
	for i, op := range ops {
		w, changed, err := n.registerLocked(op.kind, op.object, op.id, op.cmd, op.dest, op.slice, op.weight)
		if err != nil {
			// Those before it are in effect and announced below.
			err = fmt.Errorf("batch entry %d: %w", i, err)
			if len(puts) > 0 {
				p := n.dir.Announce(puts, nil)
				n.mu.Unlock()
				_ = n.wait(p)
				return err
			}
			n.mu.Unlock()
			return err
		}
		if changed {
			puts = append(puts, w)
		}
	}
	if len(puts) == 0 {
		n.mu.Unlock()
		return nil
	}
	p := n.dir.Announce(puts, nil)
	n.mu.Unlock()
	return n.wait(p)
}
