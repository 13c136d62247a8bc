package notifier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
	"github.com/natsnotifier/notifier/match"
)

// Subscriber receives notifications. Notify calls for one registration run
// one at a time, in publish order per publisher; calls for different
// registrations run concurrently. Notify should return promptly: while it
// blocks, notifications for that registration queue up to the queue size
// (WithQueueSize) and then are dropped. A panic is recovered and logged.
// No call starts after Unsubscribe of the registration or Close returned.
type Subscriber interface {
	Notify(object string, id int64, cmd string, args Args)
}

// Responder answers RPCs. RPCCall runs concurrently with other calls, up to
// the Notifier's concurrency bound (WithConcurrency); ctx ends when the
// caller's deadline passes. Returning (nil, nil) means "nothing to say": the
// caller gets no Result from this responder. An error, or a recovered panic,
// reaches the caller as a *RemoteError in Result.Err.
type Responder interface {
	RPCCall(ctx context.Context, object string, id int64, cmd string, args Args) (any, error)
}

// ResultHandler receives the outcome of RPCCall, exactly once, on a goroutine
// of its own.
type ResultHandler interface {
	RPCResponse(object string, id int64, cmd string, results []Result, err error)
}

// Notifier is one member of the bus. All methods are safe for concurrent use.
type Notifier struct {
	nc   *nats.Conn
	own  bool // Close closes nc
	o    options
	log  *slog.Logger
	subj bus.Subjects
	node string
	dir  *directory.Directory
	rand match.Rand

	closing atomic.Bool // set first by Close: API calls fail with ErrClosed

	mu     sync.RWMutex // guards the fields below
	closed bool         // no new handler goroutines may start
	local  [2]*match.Table[*localReg]
	byID   map[uint64]*localReg
	byKey  map[regKey]*localReg
	nextID uint64

	subs []*nats.Subscription
	sem  chan struct{} // RPC handler goroutines running, at most WithConcurrency
	jobs chan rpcJob   // hands a call to an idle handler goroutine; unbuffered

	stopWorkers chan struct{} // closed by Close once no call can arrive
	wg          sync.WaitGroup
	rpc         *rpcClient
	svc         micro.Service // service discovery

	stats counters
}

// regKey identifies a registration: registering the same key again replaces
// the earlier mode (full or slice) and weight.
type regKey struct {
	kind    bus.Kind
	object  string
	cmd     string
	pattern Match
	dest    any
}

// Connect connects to the NATS servers at urls (comma-separated) and joins
// the bus. The Notifier owns the connection: it reconnects forever, and Close
// closes it.
func Connect(urls string, opts ...Option) (*Notifier, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	var n *Notifier
	natsOpts := []nats.Option{
		nats.Name("notifier"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: the connection was closed on purpose
				o.logger.Warn("notifier: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			o.logger.Info("notifier: reconnected to NATS", "url", redactURLs(c.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			o.logger.Error("notifier: NATS error", "subject", subj, "err", err)
		}),
	}
	nc, err := nats.Connect(urls, append(natsOpts, o.natsOpts...)...)
	if err != nil {
		return nil, connectError(urls, o.natsOpts, err) // no secret in its text
	}
	n, err = newNotifier(nc, true, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return n, nil
}

// New joins the bus over the caller's connection, which must stay open until
// Close returns; Close does not close it. The connection should reconnect
// forever (nats.MaxReconnects(-1)): nats.go gives up after 60 attempts by
// default, and the Notifier cannot recover from a closed connection.
func New(nc *nats.Conn, opts ...Option) (*Notifier, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrInvalidOption)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return newNotifier(nc, false, o)
}

func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	if o.registerTimeout == 0 {
		o.registerTimeout = max(DefaultRegisterTimeout, 5*o.heartbeat)
	}
	return o, nil
}

func newNotifier(nc *nats.Conn, own bool, o options) (*Notifier, error) {
	if nc.IsClosed() {
		return nil, fmt.Errorf("%w: connection closed", ErrInvalidOption)
	}
	n := &Notifier{
		nc:    nc,
		own:   own,
		o:     o,
		log:   o.logger,
		subj:  bus.Subjects{Prefix: o.prefix},
		node:  newNodeID(),
		rand:  randFunc(o.rand),
		byID:  make(map[uint64]*localReg),
		byKey: make(map[regKey]*localReg),
		sem:   make(chan struct{}, o.concurrency),
		jobs:  make(chan rpcJob),

		stopWorkers: make(chan struct{}),
	}
	for k := range n.local {
		n.local[k] = match.NewTable[*localReg]()
	}
	n.log = n.log.With("node", n.node)
	// Data subscriptions come before the directory announces this node, so
	// nothing routed here after the announcement is lost.
	if err := n.subscribeData(); err != nil {
		n.unsubscribe()
		return nil, err
	}
	rpc, err := newRPCClient(n)
	if err != nil {
		n.unsubscribe()
		return nil, err
	}
	n.rpc = rpc
	ctx, cancel := context.WithTimeout(context.Background(), 4*o.syncTimeout)
	defer cancel()
	dir, err := directory.Join(ctx, directory.Options{
		Conn:      nc,
		Subjects:  n.subj,
		Node:      n.node,
		Heartbeat: o.heartbeat,
		Timeout:   o.syncTimeout,
		Logger:    n.log,
		// Calls in flight to a Notifier the directory forgot end at once.
		OnPeerGone: n.rpc.peerGone,
	})
	if err != nil {
		n.unsubscribe()
		return nil, err
	}
	n.dir = dir
	if err = n.subscribeGateway(); err == nil {
		err = n.startDiscovery()
	}
	if err != nil {
		dir.Close()
		n.unsubscribe()
		return nil, err
	}
	n.watchReconnects()
	if err := nc.FlushWithContext(ctx); err != nil {
		_ = n.Close()
		return nil, fmt.Errorf("notifier: flush: %w", err)
	}
	return n, nil
}

// newNodeID returns a random ID that is a valid subject token.
func newNodeID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// watchReconnects chains a reconnect handler that makes the directory
// re-announce this node and re-learn the bus.
func (n *Notifier) watchReconnects() {
	prev := n.nc.ReconnectHandler()
	n.nc.SetReconnectHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		if !n.closing.Load() {
			n.dir.Reconnected()
		}
	})
}

// Node returns this Notifier's ID on the bus, as it appears in subjects.
func (n *Notifier) Node() string { return n.node }

// Conn returns the NATS connection.
func (n *Notifier) Conn() *nats.Conn { return n.nc }

// Close leaves the bus: other Notifiers stop routing to this one at once,
// notifications already received are delivered, running handlers finish
// (bounded by WithCloseTimeout), pending publishes are flushed, and the
// connection is closed if Connect made it. Every method, Close included,
// returns ErrClosed afterwards.
func (n *Notifier) Close() error {
	if n.closing.Swap(true) {
		return ErrClosed
	}
	deadline := time.Now().Add(n.o.closeTimeout)
	var errs []error
	n.dir.Close() // goodbye: peers stop routing here
	_ = n.svc.Stop()
	n.mu.Lock()
	for _, r := range n.byID {
		if r.fan != nil {
			n.subs = append(n.subs, r.fan)
		}
	}
	n.mu.Unlock()
	if err := n.drainData(deadline); err != nil {
		errs = append(errs, err)
	}
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	close(n.stopWorkers) // idle handler goroutines end; busy ones finish first
	if err := waitGroup(&n.wg, deadline); err != nil {
		errs = append(errs, fmt.Errorf("notifier: close: handlers still running: %w", err))
	}
	n.rpc.close()
	if n.nc.IsConnected() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := n.nc.FlushWithContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("notifier: close: flush: %w", err))
		}
		cancel()
	}
	if n.own {
		n.nc.Close()
	}
	return errors.Join(errs...)
}

// waitGroup waits for wg until deadline.
func waitGroup(wg *sync.WaitGroup, deadline time.Time) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return context.DeadlineExceeded
	}
}

// checkDest validates a destination: non-nil and comparable.
func checkDest(dest any) error {
	if dest == nil {
		return fmt.Errorf("%w: nil", ErrInvalidDestination)
	}
	v := reflect.ValueOf(dest)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		if v.IsNil() {
			return fmt.Errorf("%w: nil %T", ErrInvalidDestination, dest)
		}
	}
	if !v.Type().Comparable() || !v.Comparable() {
		return fmt.Errorf("%w: %T is not comparable", ErrInvalidDestination, dest)
	}
	if nilFunc(dest) {
		return fmt.Errorf("%w: %T to a nil function", ErrInvalidDestination, dest)
	}
	return nil
}

func checkNames(object, cmd string) error {
	if !bus.ValidName(object) {
		return fmt.Errorf("%w: object %q", ErrInvalidName, object)
	}
	if !bus.ValidName(cmd) {
		return fmt.Errorf("%w: cmd %q", ErrInvalidName, cmd)
	}
	return nil
}

func checkWeight(w float64) error {
	if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
		return fmt.Errorf("%w: %v", ErrInvalidWeight, w)
	}
	return nil
}

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
	delete(n.byKey, r.key)
	delete(n.byID, r.id)
	n.local[r.key.kind].Delete(r)
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
