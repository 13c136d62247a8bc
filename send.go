package notifier

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
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

// prepare is the preamble of every call that sends (Publish, RPC, RPCs,
// RPCCall): it refuses a closed Notifier and invalid names, encodes args and
// checks the size against the server's max payload. The caller releases the
// encoder, which holds body, once the message is sent.
func (n *Notifier) prepare(object, cmd string, args any) (e *encoder, body []byte, isJSON bool, err error) {
	if n.closing.Load() {
		return nil, nil, false, ErrClosed
	}
	if err := checkNames(object, cmd); err != nil {
		return nil, nil, false, err
	}
	e, body, isJSON, err = encodeArgs(args)
	if err != nil {
		return nil, nil, false, err
	}
	if err := n.checkSize(body); err != nil {
		e.release()
		return nil, nil, false, err
	}
	return e, body, isJSON, nil
}

// checkSize refuses a body that, framed, exceeds the server's max payload.
func (n *Notifier) checkSize(body []byte) error {
	if max := n.nc.MaxPayload(); max > 0 && int64(len(body)+frame.FrameHeaderLen) > max {
		return fmt.Errorf("%w: %d bytes, the server accepts %d", ErrPayloadTooLarge, len(body), max-frame.FrameHeaderLen)
	}
	return nil
}

// sendBuf is a reusable buffer for subjects and frames.
var sendBufs = sync.Pool{New: func() any {
	b := &sendBuf{}
	b.full = make([]directory.Entry, 0, 16)
	b.slices = make([]directory.Entry, 0, 16)
	b.hops = make([]route.Hop, 0, 8)
	return b
}}

type sendBuf struct {
	subj, frame  []byte
	full, slices []directory.Entry
	hops         []route.Hop // the plan of a publish or an RPC
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
	b := sendBufs.Get().(*sendBuf)
	defer sendBufs.Put(b)
	full, slices := n.dir.Lookup(bus.KindPub, object, cmd, id, b.full[:0], b.slices[:0])
	defer func() {
		clear(full)
		clear(slices)
		b.full, b.slices = full[:0], slices[:0]
	}()
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
	hops, fan := route.Publish(b.hops[:0], full, slices, n.rand, n.node)
	defer func() {
		clear(hops)
		b.hops = hops[:0]
	}()
	if fan {
		if err := n.sendFan(b, flagsBase|frame.FlagBroadcast, object, cmd, id, body); err != nil {
			return err
		}
	}
	// One message per node: the full flag covers all its full registrations.
	for _, h := range hops {
		if err := n.send(b, h, flagsBase, object, cmd, id, body); err != nil {
			return err
		}
	}
	return nil
}

// errNoSlice: a re-route found no slice to draw.
var errNoSlice = errors.New("notifier: no slice")

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

// hopFlags are the frame flags of hop h: base plus what h delivers.
func hopFlags(base byte, h route.Hop) byte {
	if h.Full {
		base |= frame.FlagFull
	}
	if h.Slice {
		base |= frame.FlagSlice
	}
	return base
}
