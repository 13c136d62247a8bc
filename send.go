package notifier

import (
	"fmt"
	"unsafe"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/internal/route"
)

// Publish sends a one-way notification to every matching full registration
// on the bus and to one matching slice drawn by weight. args is encoded with
// msgpack (an Args value is sent as it is). Publishing with nothing
// registered is not an error.
func (n *Notifier) Publish(object string, id int64, cmd string, args any) error {
	e, body, isJSON, err := n.prepare(object, cmd, args)
	if err != nil {
		return err
	}
	defer e.release()
	if n.nc.IsClosed() {
		return fmt.Errorf("notifier: publish: %w", nats.ErrConnectionClosed)
	}
	return n.publish(object, id, cmd, body, isJSON, true, false, 0)
}

// publish routes one notification by the directory. extra is or'ed into the
// frame flags. With sliceOnly, only a slice is drawn (a re-route).
//
// Full registrations that match every id (Match{}) are reached with one
// message on the shared subject <prefix>.fan.<object>.<cmd>.<id>, which
// every Notifier holding such a registration listens to, so the NATS server
// does the fan-out. The others get one message per Notifier on its node
// subject. Each registration is always reached by the same one of the two
// paths, so per-registration order holds.
func (n *Notifier) publish(object string, id int64, cmd string, body []byte, isJSON, count, sliceOnly bool, extra byte) error {
	b := n.getSendBuf(bus.KindPub, object, cmd, id)
	defer b.release()
	full, slices := b.full, b.slices
	flagsBase := extra
	if isJSON {
		flagsBase |= frame.FlagJSON
	}
	if count {
		n.stats.published.Add(1)
	}
	if sliceOnly {
		h, ok := route.Reroute(slices, n.rand, n.node)
		if !ok {
			return errNoSlice
		}
		return n.send(b, h, flagsBase, object, cmd, id, body)
	}
	var fan bool
	b.hops, fan = route.Publish(b.hops[:0], full, slices, n.rand, n.node)
	if fan {
		if err := n.sendFan(b, flagsBase|frame.FlagBroadcast, object, cmd, id, body); err != nil {
			return err
		}
	}
	// One message per node: the full flag covers all its full registrations.
	for _, h := range b.hops {
		if err := n.send(b, h, flagsBase, object, cmd, id, body); err != nil {
			return err
		}
	}
	return nil
}

// sendFan publishes on the shared fan-out subject of (object, cmd).
func (n *Notifier) sendFan(b *sendBuf, flags byte, object, cmd string, id int64, body []byte) error {
	b.subj = n.subj.AppendFan(b.subj[:0], object, cmd, id)
	b.frame = frame.AppendFrame(b.frame[:0], frame.Frame{Flags: flags}, body)
	if err := n.nc.Publish(unsafe.String(unsafe.SliceData(b.subj), len(b.subj)), b.frame); err != nil {
		return fmt.Errorf("notifier: publish: %w", err)
	}
	return nil
}

// send sends hop h of a publish; base holds the flags every hop carries.
func (n *Notifier) send(b *sendBuf, h route.Hop, base byte, object, cmd string, id int64, body []byte) error {
	node, flags, slice := h.Node, hopFlags(base, h), h.SliceID
	if h.Local {
		// Local delivery skips NATS; the body must outlive the caller's buffer.
		data := append([]byte(nil), body...)
		n.deliver(flags, slice, object, cmd, id, Args{data: data, json: flags&frame.FlagJSON != 0})
		return nil
	}
	b.subj = n.subj.AppendNodeData(b.subj[:0], node, bus.KindPub, object, cmd, id)
	b.frame = frame.AppendFrame(b.frame[:0], frame.Frame{Flags: flags, Slice: slice}, body)
	// nats.go copies the subject into its buffer before Publish returns, so a
	// string over b.subj, which is reused only after that, is safe.
	if err := n.nc.Publish(unsafe.String(unsafe.SliceData(b.subj), len(b.subj)), b.frame); err != nil {
		return fmt.Errorf("notifier: publish: %w", err)
	}
	return nil
}
