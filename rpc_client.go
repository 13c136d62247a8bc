package notifier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/internal/route"
)

// rpcClient gathers the replies of this Notifier's RPCs on one wildcard inbox
// subscription: each request's reply subject is <inbox>.<call>.<target>.
type rpcClient struct {
	n      *Notifier
	prefix string // "<inbox>."
	sub    *nats.Subscription

	mu     sync.Mutex // guards calls, every call's state, and the buffers
	closed bool
	next   uint64
	calls  map[uint64]*call
	buf    []byte // subjects of the request being sent
	frame  []byte // frame of the request being sent
}

// call is one RPC in flight.
type call struct {
	id          uint64
	object, cmd string
	rid         int64
	body        []byte
	json        bool
	deadline    time.Time
	cands       route.Candidates // slices left for a redraw
	targets     []*target
	results     []Result
	open        int  // targets still to answer
	answered    bool // some registration existed at a responder
	ended       bool // done is closed
	aborted     bool // ended by Close
	done        chan struct{}

	// Most calls reach one or two Notifiers: their targets live here.
	tbuf [2]target
	tptr [2]*target
}

// newTarget returns a target, from the call's own storage while it lasts.
func (cl *call) newTarget(node string, flags byte, slice uint64) *target {
	var t *target
	if k := len(cl.targets); k < len(cl.tbuf) {
		t = &cl.tbuf[k]
	} else {
		t = new(target)
	}
	*t = target{node: node, flags: flags, slice: slice}
	return t
}

// target is one Notifier a call was sent to.
type target struct {
	node   string
	flags  byte
	slice  uint64
	expect int // replies it announced; 0 until the first
	got    int
	done   bool
}

func newRPCClient(n *Notifier) (*rpcClient, error) {
	c := &rpcClient{n: n, prefix: n.nc.NewInbox() + ".", calls: make(map[uint64]*call)}
	sub, err := n.nc.Subscribe(c.prefix+">", c.onReply)
	if err != nil {
		return nil, fmt.Errorf("notifier: subscribe: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	c.sub = sub
	return c, nil
}

// close ends the calls in flight with ErrClosed and stops the inbox.
func (c *rpcClient) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.closed = true
	for _, cl := range c.calls {
		if !cl.ended {
			cl.ended, cl.aborted = true, true
			close(cl.done)
		}
	}
	c.mu.Unlock()
	if c.sub != nil {
		_ = c.sub.Unsubscribe()
	}
}

// RPC calls every matching full RPC registration on the bus and one matching
// RPC slice drawn by weight, and returns one Result per responder that had
// something to say, in arrival order. With nothing registered it returns
// ErrNoResponders at once. The deadline comes from ctx, or WithRPCTimeout
// when ctx has none; when it passes, RPC returns the results that arrived
// and an error matching ErrTimeout and context.DeadlineExceeded.
func (n *Notifier) RPC(ctx context.Context, object string, id int64, cmd string, args any) ([]Result, error) {
	e, body, isJSON, err := n.prepare(object, cmd, args)
	if err != nil {
		return nil, err
	}
	defer e.release()
	return n.rpc.do(ctx, n.deadline(ctx), object, id, cmd, body, isJSON)
}

// maxRPCsInFlight bounds the calls one RPCs call has in flight at once.
const maxRPCsInFlight = 128

// RPCs sends one RPC per id concurrently, with one shared deadline, and
// returns the results aligned with ids (a duplicate id gets its own call).
// An id without responders holds nil. When the deadline passes, an id still
// waiting holds what arrived for it and RPCs returns the timeout error.
// Otherwise it returns ErrNoResponders when no id had any responder, else nil.
// An empty ids returns an empty result and nil.
//
// At most 128 calls are in flight at once; the others start as
// those end, within the same deadline.
func (n *Notifier) RPCs(ctx context.Context, object string, ids []int64, cmd string, args any) ([][]Result, error) {
	e, body, isJSON, err := n.prepare(object, cmd, args)
	if err != nil {
		return nil, err
	}
	defer e.release()
	out := make([][]Result, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	deadline := n.deadline(ctx)
	errs := make([]error, len(ids))
	var (
		wg   sync.WaitGroup
		next atomic.Int64 // the next index of ids to call
	)
	for range min(len(ids), maxRPCsInFlight) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				out[i], errs[i] = n.rpc.do(ctx, deadline, object, ids[i], cmd, body, isJSON)
			}
		})
	}
	wg.Wait()
	none := true
	for _, err := range errs {
		switch {
		case err == nil:
			none = false
		case errors.Is(err, ErrNoResponders):
		default:
			return out, err
		}
	}
	if none {
		return out, ErrNoResponders
	}
	return out, nil
}

// RPCCall sends an RPC like RPC and returns at once; source.RPCResponse is
// called exactly once, on another goroutine, with what RPC would have
// returned: empty results and ErrNoResponders when nobody is registered, the
// partial results and the timeout error after the default RPC timeout.
func (n *Notifier) RPCCall(object string, id int64, cmd string, args any, source ResultHandler) error {
	e, body, isJSON, err := n.prepare(object, cmd, args)
	if err != nil {
		return err
	}
	defer e.release()
	if err := checkDest(source); err != nil {
		return err
	}
	body = append([]byte(nil), body...)
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return ErrClosed
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		results, err := n.rpc.do(context.Background(), time.Now().Add(n.o.rpcTimeout), object, id, cmd, body, isJSON)
		if results == nil {
			results = []Result{}
		}
		defer func() {
			if p := recover(); p != nil {
				n.stats.panics.Add(1)
				n.log.Error("notifier: RPCResponse panicked", "object", object, "cmd", cmd, "id", id, "panic", p)
			}
		}()
		source.RPCResponse(object, id, cmd, results, err)
	}()
	return nil
}

// deadline is ctx's deadline, or WithRPCTimeout from now.
func (n *Notifier) deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(n.o.rpcTimeout)
}

// do routes one RPC by the directory and gathers the replies until
// deadline, or until ctx ends.
func (c *rpcClient) do(ctx context.Context, deadline time.Time, object string, id int64, cmd string, body []byte, isJSON bool) ([]Result, error) {
	n := c.n
	b := n.getSendBuf(bus.KindRPC, object, cmd, id)
	defer b.release()
	full, slices := b.full, b.slices
	if len(full) == 0 && len(slices) == 0 {
		return nil, ErrNoResponders
	}
	cl := &call{
		object: object, cmd: cmd, rid: id,
		body: body, json: isJSON, deadline: deadline,
		done: make(chan struct{}),
	}
	cl.targets = cl.tptr[:0]
	b.hops = route.RPC(b.hops[:0], full, slices, n.rand, n.node)
	cl.cands = route.Keep(slices)
	base := byte(frame.FlagTimeout)
	if isJSON {
		base |= frame.FlagJSON
	}
	for _, h := range b.hops {
		cl.targets = append(cl.targets, cl.newTarget(h.Node, hopFlags(base, h), h.SliceID))
	}
	cl.open = len(cl.targets)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.next++
	cl.id = c.next
	c.calls[cl.id] = cl
	first := cl.targets[:len(cl.targets):len(cl.targets)] // a redraw appends to cl.targets
	c.mu.Unlock()
	// Sent outside c.mu, so concurrent callers and the replies do not queue
	// behind each other's publishes. A target's node, flags and slice do not
	// change after it is made.
	sb := sendBufs.Get().(*sendBuf)
	for i, t := range first {
		var err error
		sb.subj, sb.frame, err = c.send(sb.subj, sb.frame, cl, i, t)
		if err != nil {
			sendBufs.Put(sb)
			c.mu.Lock()
			delete(c.calls, cl.id)
			c.mu.Unlock()
			return nil, err
		}
	}
	sendBufs.Put(sb)

	var timeout <-chan time.Time
	if d, ok := ctx.Deadline(); !ok || d.After(deadline) {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case <-cl.done:
	case <-timeout:
		err = ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = ErrTimeout
		} else {
			err = fmt.Errorf("notifier: rpc: %w", err)
		}
	}
	c.mu.Lock()
	delete(c.calls, cl.id)
	if cl.aborted {
		err = ErrClosed
	}
	results, answered := cl.results, cl.answered
	cl.results = nil // late replies are dropped: the call is gone from c.calls
	c.mu.Unlock()
	if err == nil && len(results) == 0 && !answered {
		err = ErrNoResponders
	}
	return results, err
}

// sendLocked sends the request to target i, with c's buffers.
func (c *rpcClient) sendLocked(cl *call, i int, t *target) error {
	var err error
	c.buf, c.frame, err = c.send(c.buf, c.frame, cl, i, t)
	return err
}

// send sends the request to target i, building subject, reply subject and
// frame in buf and fb, which it returns for reuse: nats.go copies them
// before PublishRequest returns.
func (c *rpcClient) send(buf, fb []byte, cl *call, i int, t *target) ([]byte, []byte, error) {
	n := c.n
	ms := time.Until(cl.deadline).Milliseconds()
	if ms < 1 {
		ms = 1
	}
	b := n.subj.AppendNodeData(buf[:0], t.node, bus.KindRPC, cl.object, cl.cmd, cl.rid)
	end := len(b)
	b = append(b, c.prefix...)
	b = strconv.AppendUint(b, cl.id, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i), 10)
	fb = frame.AppendFrame(fb[:0], frame.Frame{Flags: t.flags, Slice: t.slice, Timeout: uint64(ms)}, cl.body)
	subj := unsafe.String(unsafe.SliceData(b), end)
	reply := unsafe.String(unsafe.SliceData(b[end:]), len(b)-end)
	if err := n.nc.PublishRequest(subj, reply, fb); err != nil {
		return b, fb, fmt.Errorf("notifier: rpc: %w", err)
	}
	return b, fb, nil
}

// onReply handles one reply (or a "no responders" status) of a call.
func (c *rpcClient) onReply(m *nats.Msg) {
	callID, idx, ok := parseReplySubject(m.Subject[len(c.prefix):])
	if !ok {
		return
	}
	var drop string
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		if drop != "" {
			c.n.dir.Drop(drop)
		}
	}()
	cl := c.calls[callID]
	if cl == nil || idx >= len(cl.targets) || cl.targets[idx].done {
		return // late, or unknown
	}
	t := cl.targets[idx]
	if frame.IsNoResponders(m) {
		// That Notifier is gone: this call and every other call in flight
		// to it stop waiting for it.
		drop = t.node
		c.peerGoneLocked(t.node)
		return
	}
	total, kind, body, err := frame.ParseReply(m.Data)
	if err != nil {
		c.n.stats.undecoded.Add(1)
		cl.results = append(cl.results, Result{Err: &RemoteError{Code: CodeInternal, Message: "malformed reply from " + t.node}})
		c.finishLocked(cl, t)
		return
	}
	t.expect = total
	t.got++
	switch kind {
	case frame.ReplyValue:
		cl.answered = true
		if err := checkBody(body, false); err != nil {
			c.n.stats.undecoded.Add(1)
			cl.results = append(cl.results, Result{Err: &RemoteError{Code: CodeDecode, Message: "malformed reply from " + t.node + ": " + err.Error()}})
			break
		}
		cl.results = append(cl.results, Result{Value: Args{data: body}})
	case frame.ReplyError:
		cl.answered = true
		cl.results = append(cl.results, Result{Err: decodeRemoteError(body)})
	case frame.ReplyNone:
		cl.answered = true
	case frame.ReplyNothing:
		// The registration left that Notifier: not an answer.
	case frame.ReplyGone:
		cl.cands.Drop(route.Ref{Node: t.node, ID: t.slice})
		c.redrawLocked(cl)
	}
	if t.got >= t.expect {
		c.finishLocked(cl, t)
	}
}

// peerGone ends, in every call in flight, the wait for the Notifier node,
// which the directory forgot (Options.OnPeerGone) or NATS reported to have
// no responders: what it sent is kept, and a slice drawn there that had not
// answered is drawn again among the remaining slices while the deadline
// allows.
func (c *rpcClient) peerGone(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peerGoneLocked(node)
}

func (c *rpcClient) peerGoneLocked(node string) {
	for _, cl := range c.calls {
		if cl.ended {
			continue
		}
		for i := 0; i < len(cl.targets); i++ { // a redraw appends a target
			t := cl.targets[i]
			if t.done || t.node != node {
				continue
			}
			if t.flags&frame.FlagSlice != 0 && t.got == 0 {
				// Draw again before finishing t, so the call stays open.
				cl.cands.DropNode(node)
				c.redrawLocked(cl)
			}
			c.finishLocked(cl, t)
		}
	}
}

func (c *rpcClient) finishLocked(cl *call, t *target) {
	t.done = true
	cl.open--
	if cl.open == 0 && !cl.ended {
		cl.ended = true
		close(cl.done)
	}
}

// redrawLocked draws another slice after the drawn one turned out gone;
// the caller has dropped what is gone from cl.cands.
func (c *rpcClient) redrawLocked(cl *call) {
	if !time.Now().Before(cl.deadline) {
		return
	}
	h, ok := cl.cands.Draw(c.n.rand, c.n.node)
	if !ok {
		return
	}
	base := byte(frame.FlagTimeout)
	if cl.json {
		base |= frame.FlagJSON
	}
	t := cl.newTarget(h.Node, hopFlags(base, h), h.SliceID)
	cl.targets = append(cl.targets, t)
	cl.open++
	if err := c.sendLocked(cl, len(cl.targets)-1, t); err != nil {
		c.finishLocked(cl, t)
	}
}

func parseReplySubject(s string) (call uint64, idx int, ok bool) {
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return 0, 0, false
	}
	call, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	idx, err = strconv.Atoi(s[i+1:])
	return call, idx, err == nil && idx >= 0
}
