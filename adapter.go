package notifier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
	"github.com/natsnotifier/notifier/internal/redact"
	"github.com/natsnotifier/notifier/match"
)

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

	registry                      // this Notifier's registrations, under registry.mu
	subs     []*nats.Subscription // data and gateway subscriptions, under registry.mu; Close drains them
	server   rpcServer            // the responder side
	rpc      *rpcClient           // the caller side
	wg       handlers             // goroutines running user code or draining queues
	svc      micro.Service        // service discovery

	stats counters
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
			o.logger.Info("notifier: reconnected to NATS", "url", redact.URLs(c.ConnectedUrl()))
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
		nc:     nc,
		own:    own,
		o:      o,
		log:    o.logger,
		subj:   bus.Subjects{Prefix: o.prefix},
		node:   newNodeID(),
		rand:   randFunc(o.rand),
		server: newRPCServer(o.concurrency),
	}
	n.registry.init()
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
// connection is closed if Connect made it. While the connection is down
// (reconnecting), Close does not wait for the server: it delivers what was
// received and returns; the peers drop this Notifier by their probes. Every
// method, Close included, returns ErrClosed afterwards.
func (n *Notifier) Close() error {
	if n.closing.Swap(true) {
		return ErrClosed
	}
	deadline := time.Now().Add(n.o.closeTimeout)
	var errs []error
	n.dir.Close() // goodbye: peers stop routing here
	_ = n.svc.Stop()
	n.mu.Lock()
	for r := range n.fans {
		n.subs = append(n.subs, r.fan)
	}
	n.mu.Unlock()
	if err := n.drainData(deadline); err != nil {
		errs = append(errs, err)
	}
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	close(n.server.stopWorkers) // idle handler goroutines end; busy ones finish first
	if err := n.wg.wait(deadline); err != nil {
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

// handlers counts the goroutines that run user code (Notify, RPCCall,
// RPCResponse) and the queue drainers. Close waits for the count to reach
// zero, up to its deadline, without a goroutine of its own: a Close that times
// out leaves nothing behind but the handlers it reported still running.
type handlers struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n reaches 0; nil while nobody waits
}

// Add adds d goroutines.
func (h *handlers) Add(d int) {
	h.mu.Lock()
	h.n += d
	h.mu.Unlock()
}

// Done ends one goroutine.
func (h *handlers) Done() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if h.n == 0 && h.zero != nil {
		close(h.zero)
		h.zero = nil
	}
}

// wait waits until no goroutine is left, or deadline.
func (h *handlers) wait(deadline time.Time) error {
	h.mu.Lock()
	if h.n == 0 {
		h.mu.Unlock()
		return nil
	}
	if h.zero == nil {
		h.zero = make(chan struct{})
	}
	zero := h.zero
	h.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-zero:
		return nil
	case <-t.C:
		return context.DeadlineExceeded
	}
}

// counters are the Notifier's statistics.
type counters struct {
	published  atomic.Uint64
	delivered  atomic.Uint64
	dropped    atomic.Uint64
	panics     atomic.Uint64
	undecoded  atomic.Uint64
	rpcServed  atomic.Uint64
	rpcErrors  atomic.Uint64
	fanDropped atomic.Uint64 // dropped by fan-out subscriptions now gone
	lastDropLg atomic.Int64  // unix nanos of the last drop log line
}

// Stats are counters since the Notifier started. As JSON (the stats of
// `nats micro stats notifier`), every key is snake_case, like the keys the
// micro service adds beside them.
type Stats struct {
	// Publish calls that sent, gateway publishes included.
	Published uint64 `json:"published"`
	// Notify calls made.
	Delivered uint64 `json:"delivered"`
	// Notifications accepted from NATS but not delivered: a full queue, a
	// full registration removed with notifications queued, a slice that
	// left with no other slice to draw, a gateway publish too large to route.
	Dropped uint64 `json:"dropped"`
	// Recovered panics of Notify, RPCCall and RPCResponse.
	Panics uint64 `json:"panics"`
	// Messages from NATS refused because they could not be parsed or
	// decoded: bad subjects, frames, JSON or msgpack (see Args.Decode),
	// directory messages included.
	Undecodable uint64 `json:"undecodable"`
	// Directory messages ignored because they claimed another node than the
	// one whose subject they came on (forged or misrouted).
	Forged uint64 `json:"forged"`
	// RPCCall invocations.
	RPCServed uint64 `json:"rpc_served"`
	// RPC answers this Notifier turned into an error: the handler failed or
	// panicked, its result could not be encoded or exceeded max payload, or
	// a gateway reply exceeded max payload.
	RPCErrors uint64 `json:"rpc_errors"`
	// Other Notifiers on the bus that this one knows of now (a gauge, not a
	// counter): one that left or was found gone is no longer counted.
	Peers int `json:"peers"`
}

// Stats returns the Notifier's counters.
func (n *Notifier) Stats() Stats {
	c := &n.stats
	dropped := c.dropped.Load() + c.fanDropped.Load()
	n.mu.RLock()
	for r := range n.fans { // not every registration: Stats stays cheap with many
		if d, err := r.fan.Dropped(); err == nil {
			dropped += uint64(d)
		}
	}
	n.mu.RUnlock()
	var (
		ds    directory.Stats
		peers int
	)
	if n.dir != nil {
		ds = n.dir.Stats()
		peers = n.dir.PeerCount()
	}
	return Stats{
		Published: c.published.Load(), Delivered: c.delivered.Load(), Dropped: dropped,
		Panics: c.panics.Load(), Undecodable: c.undecoded.Load() + ds.Undecodable, Forged: ds.Forged,
		RPCServed: c.rpcServed.Load(), RPCErrors: c.rpcErrors.Load(),
		Peers: peers,
	}
}
