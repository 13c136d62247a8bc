package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/match"
)

// Defaults of Options.
const (
	DefaultHeartbeat   = time.Second
	DefaultExpiryBeats = 3 // a peer silent for this many heartbeats is dropped
	DefaultTimeout     = 2 * time.Second
)

// ErrClosed is returned by a Directory after Close.
var ErrClosed = errors.New("notifier: directory closed")

// Options configure a Directory.
type Options struct {
	Conn     *nats.Conn
	Subjects Subjects
	Node     string // this node's ID: a valid subject token, unique on the bus

	// Heartbeat is how often the node announces itself. Default DefaultHeartbeat.
	Heartbeat time.Duration
	// Expiry is how long a silent peer is kept. Default DefaultExpiryBeats*Heartbeat.
	Expiry time.Duration
	// Timeout bounds each directory request (member list, table fetch). Default DefaultTimeout.
	Timeout time.Duration
	Logger  *slog.Logger

	// OnPeerGone, if set, is called with a node's ID each time the directory
	// forgets that node (goodbye, silence, no responders, failed fetch). Calls
	// come from one goroutine owned by the Directory, in order, never under
	// its lock; a slow callback delays only later OnPeerGone calls.
	OnPeerGone func(node string)
}

// Directory is one node's live view of every registration on the bus,
// its own included. All methods are safe for concurrent use.
type Directory struct {
	o  Options
	nc *nats.Conn

	mu      sync.RWMutex
	tables  [numKinds]*match.Table[RegRef]
	peers   map[string]*peer
	own     map[uint64]Reg // this node's registrations
	ver     uint64         // version of own
	waiters map[*waiter]struct{}
	leaving bool // Close began: goodbye sent
	closed  bool

	subs   []*nats.Subscription
	ctx    context.Context // canceled by Close; bounds every request
	cancel context.CancelFunc
	resync chan struct{} // buffered 1: a pending resync request is enough

	gone     []string      // dropped nodes not yet passed to OnPeerGone; under mu
	goneWake chan struct{} // buffered 1: gone has entries

	reconnected atomic.Int64 // unix nanoseconds of the last reconnect
	wg          sync.WaitGroup
}

// peer is what a node knows of another node.
type peer struct {
	ver      uint64          // version of its table we hold
	regs     map[uint64]Kind // its registrations we hold, by ID
	seen     time.Time       // last message from it
	acked    uint64          // highest of our versions it acknowledged
	fetching bool            // a table fetch is in flight
	fetched  chan struct{}   // closed when the fetch in flight ends
	buffered []*announcement // deltas received during the fetch
	acks     []pendingAck    // acknowledgements owed once ver reaches them
}

type pendingAck struct {
	reply string
	ver   uint64
}

// waiter is an Update waiting for the peers known at the time to apply it.
type waiter struct {
	ver  uint64
	need map[string]struct{}
	done chan struct{}
}

// Join subscribes to the directory subjects, learns every registration
// already on the bus, announces this node and returns. ctx bounds the sync.
func Join(ctx context.Context, o Options) (*Directory, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Expiry <= 0 {
		o.Expiry = DefaultExpiryBeats * o.Heartbeat
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Directory{
		o:       o,
		nc:      o.Conn,
		peers:   make(map[string]*peer),
		own:     make(map[uint64]Reg),
		waiters: make(map[*waiter]struct{}),
		resync:  make(chan struct{}, 1),
	}
	for k := range d.tables {
		d.tables[k] = match.NewTable[RegRef]()
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if o.OnPeerGone != nil {
		d.goneWake = make(chan struct{}, 1)
		d.wg.Add(1)
		go d.reportGone()
	}

	fail := func(err error) (*Directory, error) {
		d.shutdown()
		return nil, err
	}
	// Announcements first: every change made after a member answers us below
	// reaches us, because our subscriptions propagate in order.
	for _, s := range []struct {
		subj string
		cb   nats.MsgHandler
	}{
		{o.Subjects.AnnAll(), d.onAnnouncement},
		{o.Subjects.NodeAck(o.Node), d.onAck},
		{o.Subjects.NodeDir(o.Node), d.onTableRequest},
	} {
		sub, err := d.nc.Subscribe(s.subj, s.cb)
		if err != nil {
			return fail(fmt.Errorf("notifier: subscribe %s: %w", s.subj, err))
		}
		d.subs = append(d.subs, sub)
	}
	fctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	if err := d.nc.FlushWithContext(fctx); err != nil {
		return fail(fmt.Errorf("notifier: flush: %w", err))
	}
	if err := d.sync(ctx); err != nil {
		return fail(err)
	}
	sub, err := d.nc.QueueSubscribe(o.Subjects.Members(), "members", d.onMembers)
	if err != nil {
		return fail(fmt.Errorf("notifier: subscribe members: %w", err))
	}
	d.addSub(sub)
	d.hello(ctx)
	// Members first heard of meanwhile (joining at the same time) are being
	// fetched: the bus is known only once they are in.
	_ = d.waitFetches(ctx) // on ctx's end, the flush below fails
	// Until the server has our subscriptions a joiner would take the bus for
	// empty, or miss our table: Join returns only once they are in.
	if err := d.nc.FlushWithContext(fctx); err != nil {
		return fail(fmt.Errorf("notifier: flush: %w", err))
	}
	d.wg.Add(1)
	go d.loop()
	return d, nil
}

func (d *Directory) addSub(s *nats.Subscription) {
	d.mu.Lock()
	d.subs = append(d.subs, s)
	d.mu.Unlock()
}

// Node returns this node's ID.
func (d *Directory) Node() string { return d.o.Node }

// Lookup appends the registrations of kind k matching (object, cmd, id), on
// every node, to full and slices.
func (d *Directory) Lookup(k Kind, object, cmd string, id int64, full, slices []Entry) ([]Entry, []Entry) {
	d.mu.RLock()
	full, slices = d.tables[k].Lookup(object, cmd, id, full, slices)
	d.mu.RUnlock()
	return full, slices
}

// Peers returns the IDs of the other nodes currently known.
func (d *Directory) Peers() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]string, 0, len(d.peers))
	for n := range d.peers {
		out = append(out, n)
	}
	return out
}

// Len returns the number of registrations of kind k known bus-wide.
func (d *Directory) Len(k Kind) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.tables[k].Len()
}

// Pending is an announced change waiting to be applied by the peers.
type Pending struct {
	d   *Directory
	w   *waiter // nil when nobody needs to confirm
	err error
}

// Announce changes this node's registrations (puts replace by ID) and
// announces the change. Callers that must keep several changes in order call
// Announce under their own lock, then Wait outside it.
func (d *Directory) Announce(puts []Reg, dels []uint64) *Pending {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return &Pending{err: ErrClosed}
	}
	for _, r := range puts {
		d.putLocked(d.o.Node, r)
		d.own[r.ID] = r
	}
	for _, id := range dels {
		if r, ok := d.own[id]; ok {
			d.tables[r.Kind].Delete(RegRef{Node: d.o.Node, ID: id})
			delete(d.own, id)
		}
	}
	d.ver++
	data, err := msgpack.Marshal(&announcement{Type: annDelta, Node: d.o.Node, Ver: d.ver, Puts: puts, Dels: dels})
	if err == nil {
		// Published under the lock so versions go out in order.
		err = d.nc.PublishMsg(&nats.Msg{Subject: d.o.Subjects.Ann(d.o.Node), Reply: d.o.Subjects.NodeAck(d.o.Node), Data: data})
	}
	if err != nil {
		return &Pending{err: fmt.Errorf("notifier: announce: %w", err)}
	}
	if len(d.peers) == 0 {
		return &Pending{}
	}
	w := &waiter{ver: d.ver, need: make(map[string]struct{}, len(d.peers)), done: make(chan struct{})}
	for n := range d.peers {
		w.need[n] = struct{}{}
	}
	d.waiters[w] = struct{}{}
	return &Pending{d: d, w: w}
}

// Wait waits until every peer known when the change was announced has
// applied it or left, or until timeout. A timeout is reported wrapping
// context.DeadlineExceeded; the change stays in effect and reaches the late
// peers with their next table fetch.
func (p *Pending) Wait(timeout time.Duration) error {
	if p.err != nil || p.w == nil {
		return p.err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.w.done:
		return nil
	case <-p.d.ctx.Done():
		return ErrClosed
	case <-t.C:
		p.d.mu.Lock()
		delete(p.d.waiters, p.w)
		missing := len(p.w.need)
		p.d.mu.Unlock()
		if missing == 0 {
			return nil // confirmed just as the timer fired
		}
		return fmt.Errorf("notifier: %d peers did not confirm the registration change within %v: %w",
			missing, timeout, context.DeadlineExceeded)
	}
}

// putLocked inserts or replaces a registration of node.
func (d *Directory) putLocked(node string, r Reg) {
	if r.Kind >= numKinds {
		return
	}
	ref := RegRef{Node: node, ID: r.ID}
	if node != d.o.Node {
		p := d.peers[node]
		if old, ok := p.regs[r.ID]; ok && old != r.Kind {
			d.tables[old].Delete(ref)
		}
		p.regs[r.ID] = r.Kind
	} else if old, ok := d.own[r.ID]; ok && old.Kind != r.Kind {
		d.tables[old.Kind].Delete(ref)
	}
	d.tables[r.Kind].Put(r.entry(node))
}

func (d *Directory) delLocked(node string, id uint64) {
	p := d.peers[node]
	if k, ok := p.regs[id]; ok {
		d.tables[k].Delete(RegRef{Node: node, ID: id})
		delete(p.regs, id)
	}
}

// Drop forgets node and its registrations, for instance when NATS reported no
// responders for it. A live node is learned again from its next heartbeat.
func (d *Directory) Drop(node string) {
	d.mu.Lock()
	d.dropLocked(node, "no responders")
	d.mu.Unlock()
}

func (d *Directory) dropLocked(node, why string) {
	p, ok := d.peers[node]
	if !ok {
		return
	}
	for id, k := range p.regs {
		d.tables[k].Delete(RegRef{Node: node, ID: id})
	}
	delete(d.peers, node)
	if p.fetching {
		p.fetching = false
		close(p.fetched)
	}
	for w := range d.waiters {
		delete(w.need, node)
		d.releaseLocked(w)
	}
	d.o.Logger.Info("notifier: peer dropped", "peer", node, "reason", why)
	if d.goneWake != nil {
		d.gone = append(d.gone, node)
		select {
		case d.goneWake <- struct{}{}:
		default:
		}
	}
}

// reportGone passes dropped nodes to Options.OnPeerGone, outside the lock,
// until the Directory shuts down.
func (d *Directory) reportGone() {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.goneWake:
		}
		d.mu.Lock()
		gone := d.gone
		d.gone = nil
		d.mu.Unlock()
		for _, n := range gone {
			d.o.OnPeerGone(n)
		}
	}
}

func (d *Directory) releaseLocked(w *waiter) {
	if len(w.need) == 0 {
		delete(d.waiters, w)
		close(w.done)
	}
}

// Reconnected tells the directory its connection came back: it re-announces
// itself and re-learns the bus.
func (d *Directory) Reconnected() {
	select {
	case d.resync <- struct{}{}:
	default:
	}
}

// Close says goodbye, stops every goroutine and unsubscribes. It does not
// close the connection.
func (d *Directory) Close() {
	d.mu.Lock()
	if d.closed || d.leaving {
		d.mu.Unlock()
		return
	}
	d.leaving = true
	// Goodbye, acknowledged by every peer: once they all dropped this node,
	// none routes anything here, and nothing in flight is lost.
	var w *waiter
	data, err := msgpack.Marshal(&announcement{Type: annBye, Node: d.o.Node, Ver: d.ver + 1})
	if err == nil {
		err = d.nc.PublishMsg(&nats.Msg{Subject: d.o.Subjects.Ann(d.o.Node), Reply: d.o.Subjects.NodeAck(d.o.Node), Data: data})
	}
	if err == nil && len(d.peers) > 0 && d.nc.IsConnected() {
		w = &waiter{ver: d.ver + 1, need: make(map[string]struct{}, len(d.peers)), done: make(chan struct{})}
		for n := range d.peers {
			w.need[n] = struct{}{}
		}
		d.waiters[w] = struct{}{}
	}
	d.mu.Unlock()
	if w != nil {
		t := time.NewTimer(min(d.o.Timeout, time.Second))
		select {
		case <-w.done:
		case <-t.C:
			d.o.Logger.Warn("notifier: not every peer confirmed the goodbye")
		}
		t.Stop()
	}
	d.shutdown()
}

func (d *Directory) shutdown() {
	d.mu.Lock()
	d.closed = true
	subs := d.subs
	d.subs = nil
	d.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	d.cancel()
	d.wg.Wait()
}

// loop sends heartbeats, expires silent peers and resyncs after reconnects.
func (d *Directory) loop() {
	defer d.wg.Done()
	t := time.NewTicker(d.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.heartbeat()
			d.expire()
		case <-d.resync:
			d.reconnected.Store(time.Now().UnixNano())
			d.mu.Lock()
			now := time.Now()
			for _, p := range d.peers {
				p.seen = now // nobody could be heard while we were away
			}
			d.mu.Unlock()
			d.heartbeat()
			if err := d.sync(d.ctx); err != nil && d.ctx.Err() == nil {
				d.o.Logger.Warn("notifier: directory resync failed", "err", err)
			}
		}
	}
}

// hello announces this node and waits until every member it knows has
// learned it (fetched its table), so that from then on their registration
// changes wait for this node's acknowledgement too. A member that does not
// answer within the Timeout is left to the heartbeats.
func (d *Directory) hello(ctx context.Context) {
	d.mu.Lock()
	data, err := msgpack.Marshal(&announcement{Type: annHeartbeat, Node: d.o.Node, Ver: d.ver})
	if err == nil {
		err = d.nc.PublishMsg(&nats.Msg{Subject: d.o.Subjects.Ann(d.o.Node), Reply: d.o.Subjects.NodeAck(d.o.Node), Data: data})
	}
	if err != nil || len(d.peers) == 0 {
		d.mu.Unlock()
		return
	}
	w := &waiter{ver: d.ver, need: make(map[string]struct{}, len(d.peers)), done: make(chan struct{})}
	for n := range d.peers {
		w.need[n] = struct{}{}
	}
	d.waiters[w] = struct{}{}
	d.mu.Unlock()
	t := time.NewTimer(d.o.Timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return
	case <-ctx.Done():
	case <-t.C:
	}
	d.mu.Lock()
	delete(d.waiters, w)
	missing := len(w.need)
	d.mu.Unlock()
	if missing > 0 {
		d.o.Logger.Warn("notifier: members did not confirm this node's arrival", "missing", missing)
	}
}

// waitFetches waits until the table fetches in flight have ended, or ctx.
func (d *Directory) waitFetches(ctx context.Context) error {
	d.mu.RLock()
	var wait []chan struct{}
	for _, p := range d.peers {
		if p.fetching {
			wait = append(wait, p.fetched)
		}
	}
	d.mu.RUnlock()
	for _, c := range wait {
		select {
		case <-c:
		case <-ctx.Done():
			return fmt.Errorf("notifier: directory sync: %w", ctx.Err())
		}
	}
	return nil
}

func (d *Directory) heartbeat() {
	d.mu.RLock()
	if d.leaving || d.closed {
		d.mu.RUnlock()
		return
	}
	data, err := msgpack.Marshal(&announcement{Type: annHeartbeat, Node: d.o.Node, Ver: d.ver})
	d.mu.RUnlock()
	if err == nil {
		_ = d.nc.Publish(d.o.Subjects.Ann(d.o.Node), data)
	}
}

func (d *Directory) expire() {
	if !d.nc.IsConnected() {
		return // we cannot hear anybody; judge after the reconnect
	}
	cutoff := time.Now().Add(-d.o.Expiry)
	d.mu.Lock()
	for n, p := range d.peers {
		if p.seen.Before(cutoff) {
			d.dropLocked(n, "silent")
		}
	}
	d.mu.Unlock()
}
