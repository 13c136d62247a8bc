package notifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
)

// onRPC handles an RPC routed to this Notifier: every matching full RPC
// registration (FlagFull) and the requested slice (FlagSlice) answer, each
// with its own reply message announcing how many replies to expect.
func (n *Notifier) onRPC(m *nats.Msg, skip int) {
	if m.Reply == "" {
		n.stats.undecoded.Add(1)
		return
	}
	object, cmd, id, f, args, err := parseRouted(m.Subject, skip, m.Data)
	if err != nil {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: malformed routed rpc refused", "subject", m.Subject, "err", err)
		n.reply(m.Reply, 1, frame.ReplyError, encodeRemoteError(&RemoteError{Code: CodeDecode, Message: "malformed request: " + err.Error()}))
		return
	}
	var regsBuf [4]*localReg
	n.mu.RLock()
	regs, slice, gone := n.registry.lookupLocked(bus.KindRPC, f, object, cmd, id, regsBuf[:0])
	if slice != nil {
		regs = append(regs, slice)
	}
	n.mu.RUnlock()

	total := len(regs)
	if gone {
		total++
		n.reply(m.Reply, total, frame.ReplyGone, nil)
	}
	if total == 0 {
		n.reply(m.Reply, 1, frame.ReplyNothing, nil)
		return
	}
	timeout := n.o.rpcTimeout
	if f.Flags&frame.FlagTimeout != 0 {
		// The handler's deadline is a little before the caller's, so that a
		// handler giving up on ctx still gets its error to the caller in time.
		timeout = time.Duration(f.Timeout) * time.Millisecond
		timeout -= min(timeout/10, 50*time.Millisecond)
	}
	n.mu.RLock()
	if n.closed {
		n.mu.RUnlock()
		return
	}
	n.mu.RUnlock()
	for _, r := range regs {
		n.dispatch(rpcJob{r: r, reply: m.Reply, total: total, timeout: timeout, object: object, id: id, cmd: cmd, args: args})
	}
}

// rpcServer is the responder side's state: the bound on handlers running at
// once and the hand-off of calls to idle handler goroutines.
type rpcServer struct {
	sem         chan struct{} // RPC handler goroutines running, at most WithConcurrency
	jobs        chan rpcJob   // hands a call to an idle handler goroutine; unbuffered
	stopWorkers chan struct{} // closed by Close once no call can arrive
}

func newRPCServer(concurrency int) rpcServer {
	return rpcServer{sem: make(chan struct{}, concurrency), jobs: make(chan rpcJob), stopWorkers: make(chan struct{})}
}

// rpcJob is one handler call to make.
type rpcJob struct {
	r           *localReg
	reply       string
	total       int
	timeout     time.Duration
	object, cmd string
	id          int64
	args        Args
}

// workerIdle is how long an idle handler goroutine waits for more work
// before it ends: long enough to serve a steady stream of calls without
// starting a goroutine (and growing its stack) for each.
const workerIdle = 100 * time.Millisecond

// dispatch hands j to an idle handler goroutine, or starts one while fewer
// than WithConcurrency run; otherwise it waits for one to be free, which
// holds back this Notifier's RPC subscription. Called only from that
// subscription's callback, while the Notifier is not closed.
func (n *Notifier) dispatch(j rpcJob) {
	select {
	case n.server.jobs <- j:
		return
	default:
	}
	select {
	case n.server.sem <- struct{}{}:
		n.wg.Add(1)
		go n.worker(j)
	case n.server.jobs <- j:
	}
}

// worker runs handler calls until it has been idle for workerIdle, or the
// Notifier closes.
func (n *Notifier) worker(j rpcJob) {
	defer func() {
		<-n.server.sem
		n.wg.Done()
	}()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		n.serve(j)
		idle.Reset(workerIdle)
		select {
		case j = <-n.server.jobs:
		case <-idle.C:
			return
		case <-n.server.stopWorkers:
			return
		}
	}
}

// serve runs one handler and sends its reply. Whatever fails on this side
// (the handler, encoding its result, a result too large to send) becomes an
// error reply, so the caller has its answer before its deadline.
func (n *Notifier) serve(j rpcJob) {
	ctx := newHandlerCtx(j.timeout)
	defer ctx.cancel()
	n.stats.rpcServed.Add(1)
	v, err := n.callHandler(ctx, j.r, j.object, j.id, j.cmd, j.args)
	if err != nil {
		var re *RemoteError
		if !errors.As(err, &re) {
			re = &RemoteError{Code: CodeHandler, Message: err.Error()}
		}
		n.stats.rpcErrors.Add(1)
		n.reply(j.reply, j.total, frame.ReplyError, encodeRemoteError(re))
		return
	}
	if v == nil {
		n.reply(j.reply, j.total, frame.ReplyNone, nil)
		return
	}
	e, body, err := encodeResult(v)
	defer e.release()
	if err != nil {
		n.stats.rpcErrors.Add(1)
		n.log.Warn("notifier: rpc result cannot be encoded", "object", j.object, "cmd", j.cmd, "id", j.id, "err", err)
		n.reply(j.reply, j.total, frame.ReplyError, encodeRemoteError(&RemoteError{Code: CodeEncode, Message: err.Error()}))
		return
	}
	n.reply(j.reply, j.total, frame.ReplyValue, body)
}

// encodeResult encodes a handler's result as msgpack. Args that came in as
// JSON (from the gateway) go back as msgpack. A panic of a custom encoder
// is an error.
func encodeResult(v any) (e *encoder, body []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			e, body, err = nil, nil, fmt.Errorf("%w: panic: %v", ErrEncode, p)
		}
	}()
	e, b, isJSON, err := encodeArgs(v)
	if err != nil || !isJSON {
		return e, b, err
	}
	var x any
	if err := (Args{data: b, json: true}).Decode(&x); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	e, b, _, err = encodeArgs(jsonSafe(x))
	return e, b, err
}

func (n *Notifier) callHandler(ctx context.Context, r *localReg, object string, id int64, cmd string, args Args) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			n.stats.panics.Add(1)
			n.log.Error("notifier: RPCCall panicked", "object", object, "cmd", cmd, "id", id, "panic", p)
			v, err = nil, &RemoteError{Code: CodePanic, Message: fmt.Sprintf("panic: %v", p)}
		}
	}()
	return r.resp.RPCCall(ctx, object, id, cmd, args)
}

// reply sends one routed RPC reply. A reply the server would refuse (over
// its max payload) is replaced by an error reply saying so, counted in
// Stats().RPCErrors and logged.
func (n *Notifier) reply(subject string, total int, kind byte, body []byte) {
	b := replyBufs.Get().(*[]byte)
	*b = frame.AppendReply((*b)[:0], total, kind, body)
	err := n.nc.Publish(subject, *b) // nats.go copies the data
	if errors.Is(err, nats.ErrMaxPayload) {
		n.stats.rpcErrors.Add(1)
		n.log.Warn("notifier: rpc reply too large, sent an error instead", "bytes", len(*b), "max_payload", n.nc.MaxPayload())
		re := &RemoteError{Code: CodeEncode, Message: fmt.Sprintf("%s: the reply is %d bytes, the server accepts %d", ErrPayloadTooLarge, len(*b), n.nc.MaxPayload())}
		*b = frame.AppendReply((*b)[:0], total, frame.ReplyError, encodeRemoteError(re))
		err = n.nc.Publish(subject, *b)
	}
	if err != nil {
		n.log.Warn("notifier: rpc reply failed", "err", err)
	}
	if cap(*b) <= 64<<10 {
		replyBufs.Put(b)
	}
}

// replyBufs are buffers for RPC replies.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}
