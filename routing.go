package notifier

// What every call that sends shares, Publish and the RPC calls alike: the
// preamble that checks and encodes, the pooled buffers, the directory lookup
// and the planner's hops turned into frame flags. The planner itself
// (internal/route) decides which Notifiers a message goes to.

import (
	"fmt"
	"sync"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/internal/route"
)

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

// sendBufs pools the buffers of one send: the directory's matches, the
// planner's hops, and the subject and frame being written.
var sendBufs = sync.Pool{New: func() any {
	b := &sendBuf{}
	b.full = make([]directory.Entry, 0, 16)
	b.slices = make([]directory.Entry, 0, 16)
	b.hops = make([]route.Hop, 0, 8)
	return b
}}

type sendBuf struct {
	subj, frame  []byte
	full, slices []directory.Entry // the directory's matches
	hops         []route.Hop       // the plan of a publish or an RPC
}

// getSendBuf takes a buffer from the pool and fills it with the directory's
// matches of kind for (object, cmd, id). The caller puts it back with
// release.
func (n *Notifier) getSendBuf(k bus.Kind, object, cmd string, id int64) *sendBuf {
	b := sendBufs.Get().(*sendBuf)
	b.full, b.slices = n.dir.Lookup(k, object, cmd, id, b.full[:0], b.slices[:0])
	return b
}

// release drops what b references and returns it to the pool.
func (b *sendBuf) release() {
	clear(b.full)
	clear(b.slices)
	clear(b.hops)
	b.full, b.slices, b.hops = b.full[:0], b.slices[:0], b.hops[:0]
	sendBufs.Put(b)
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
