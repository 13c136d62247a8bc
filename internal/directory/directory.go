package directory

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

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/match"
)

// Defaults of Options.
const (
	DefaultHeartbeat = time.Second // probe period
	DefaultTimeout   = 2 * time.Second

	// DefaultExpiryBeats is kept for callers that computed an expiry from
	// it. A peer is now dropped after Expiry (default one Heartbeat) of
	// unanswered probes.
	DefaultExpiryBeats = 1
)

// ErrClosed is returned by a Directory after Close.
var ErrClosed = errors.New("notifier: directory closed")

// Options configure a Directory.
type Options struct {
	Conn     *nats.Conn
	Subjects bus.Subjects
	Node     string // this node's ID: a valid subject token, unique on the bus

	// Heartbeat is how often the node probes its two successors on the
	// ring. Default DefaultHeartbeat.
	Heartbeat time.Duration
	// Expiry is how long a successor may leave probes unanswered before it
	// is reported gone: two probes in a row of Expiry/2 each. Default one
	// Heartbeat. A successor whose connection is gone ("no responders") is
	// reported at the first probe.
	Expiry time.Duration
	// Timeout bounds each directory request (member list, table fetch). Default DefaultTimeout.
	Timeout time.Duration
	Logger  *slog.Logger

	// OnPeerGone, if set, is called with a node's ID each time the directory
	// forgets that node (goodbye, failed probes, a drop reported by another
	// node, no responders, failed fetch). Calls come from one goroutine owned
	// by the Directory, in order, never under its lock; a slow callback
	// delays only later OnPeerGone calls.
	OnPeerGone func(node string)
}

// Stats are counters of one Directory since it joined.
type Stats struct {
	// Undecodable counts directory messages that could not be decoded, or
	// were of a type this version does not know. Each is logged.
	Undecodable uint64
	// Forged counts directory messages that claimed another node than the
	// subject they came on, and messages in this node's name it did not send.
	Forged uint64
	// Fetches counts table fetches made; FetchTimeouts those that got no
	// answer in time (the node is kept, and judged by the probes);
	// RepairsSkipped those a repair wanted but the rate limit put off to a
	// later probe round.
	Fetches, FetchTimeouts, RepairsSkipped uint64
	// ProbesSent counts ring probes; ProbesLate the successors that left
	// two probes unanswered but were kept: heard from meanwhile, or this
	// node was too busy to judge (its timer woke late, replies waited, its
	// process was collecting garbage);
	// DropsReported the peers this node's probes found gone; Reannounced
	// how often this node re-announced itself after it was reported gone or
	// impersonated.
	ProbesSent, ProbesLate, DropsReported, Reannounced uint64
	// DropsDoubted counts drops reported by others that this node did not
	// follow, having heard from the node within the Expiry; DropsRefuted
	// those it did not follow because the node spoke within the grace
	// after the report (Expiry/2). Rejoins counts
	// nodes heard from again soon after a reported drop and learned from
	// their own re-announcement instead of a table fetch.
	DropsDoubted, DropsRefuted, Rejoins uint64
	// Batches counts the announcements of registration changes; Changes
	// the Announce calls they carried (group commit: Changes/Batches per
	// announcement).
	Batches, Changes uint64
}

type counters struct {
	undecodable, forged, fetches, fetchTimeouts, repairsSkipped            atomic.Uint64
	probes, probesLate, drops, dropsDoubted, reannounced, batches, changes atomic.Uint64
	rejoins, refuted                                                       atomic.Uint64
}

// Directory is one node's live view of every registration on the bus,
// its own included. All methods are safe for concurrent use.
//
// Failure detection: the nodes, sorted by ID, form a ring; every Heartbeat
// each node probes its two successors. A probe answered "no responders"
// makes the prober drop the successor and announce the drop to all (a
// proven drop, which every node follows). Two probes unanswered do the
// same unless the successor sent anything meanwhile, or the prober was too
// busy to judge (its timer woke late, replies waited in its inbox, the
// garbage collector or the scheduler kept its goroutines waiting), or
// three such drops already fell within two Heartbeats (a stall of the bus,
// not that many frozen nodes); a node that heard from the target within
// the Expiry doubts such a drop, and the others follow it only if the
// target stays silent for Expiry/2 after the report (it hears the report
// too and refutes it by re-announcing itself). A node that hears itself
// reported gone (or sees a message in its name it did not send)
// re-announces its whole table under a higher version; a node that dropped
// it and hears from it again waits for that re-announcement rather than
// fetching its table (see repairLocked). A probe's answer carries the successor's
// table version and a digest of its view (XOR of a hash of every (node,
// version) it holds): a version still behind what the previous answer
// said, or a digest that differs twice in a row, makes the prober fetch
// what it lacks (not while the node's deltas keep arriving: that is lag),
// so a lost announcement is repaired within a few probe rounds. Idle
// traffic is two probes and two answers per node per Heartbeat: 4N
// messages into the server and 4N out per second.
type Directory struct {
	o  Options
	nc *nats.Conn

	mu      sync.RWMutex
	index   [numKinds]match.Index[RegRef] // every registration of the bus, by kind
	peers   map[string]*peer
	ring    []string // the peers' IDs, sorted: the probe ring (see successorsLocked)
	self    regSet   // this node's registrations (their items in the index)
	ver     uint64   // version of own
	digest  uint64   // XOR of verHash over every node held, this one included
	waiters map[*waiter]struct{}
	leaving bool // Close began: goodbye sent
	closed  bool

	// Group commit: changes announced but not yet published, and the
	// waiters of the calls that made them.
	pend       map[uint64]*Reg // nil: deleted
	next       *waiter         // the waiter of the next announcement, shared by its callers
	commitWake chan struct{}   // buffered 1

	probing map[string]bool // probes in flight, by successor
	limiter tokens          // repair fetches and verifications

	// dropped marks the nodes dropped on a drop report (ours or another
	// node's) in the last rejoinMemory: such a node hears the report and
	// re-announces its whole table, so a message from it is no reason to
	// fetch that table. Under mu; at most maxDropped entries.
	dropped map[string]time.Time

	reannounce chan struct{} // buffered 1
	lastReann  time.Time     // under mu

	subs    []*nats.Subscription
	replies *nats.Subscription // of the inbox: fetch and probe replies
	anns    *nats.Subscription // of every node's announcements
	ctx     context.Context    // canceled by Close; bounds every request
	cancel  context.CancelFunc
	resync  chan struct{} // buffered 1: a pending resync request is enough

	// Table fetches share one wildcard inbox subscription.
	inbox    string
	fetchMu  sync.Mutex
	fetchSeq uint64
	fetchChs map[string]chan *nats.Msg

	gone     []string      // dropped nodes not yet passed to OnPeerGone; under mu
	unproven []time.Time   // the last drops for unanswered probes; under mu
	goneWake chan struct{} // buffered 1: gone has entries

	names interner // strings of decoded announcements and acks

	stats       counters
	reconnected atomic.Int64 // unix nanoseconds of the last reconnect
	srtt        atomic.Int64 // smoothed round trip of answered probes, nanoseconds
	wg          sync.WaitGroup
}

// peer is what a node knows of another node.
type peer struct {
	ver      uint64          // version of its table we hold
	regs     regSet          // its registrations we hold
	acked    uint64          // highest of our versions it acknowledged
	answered bool            // it acknowledged one of our announcements: it knows us
	fetching bool            // a table fetch is in flight
	fetched  chan struct{}   // closed when the fetch in flight ends
	buffered []*announcement // deltas received during the fetch
	acks     []pendingAck    // acknowledgements owed once ver reaches them

	unverified bool      // learned indirectly; not waited for until its table is in
	awaiting   time.Time // nonzero: heard from again after a reported drop, its re-announcement awaited since
	suspected  time.Time // nonzero: reported gone for unanswered probes at this time, not yet judged
	heard      time.Time // when it last sent us anything: evidence it lives
	applied    time.Time // when we last applied a delta or full table of its

	// Probe bookkeeping (as a successor of this node).
	verOff, digestOff bool   // the last answer differed from what we hold
	claimed           uint64 // the version of its last answer
	vecBehind         uint64 // a successor's vector had it at this newer version (0: not behind)
	wantVector        bool   // the next probe asks for its vector of versions
}

type pendingAck struct {
	reply string
	ver   uint64
}

// waiter is one announcement waiting for the peers known at the time to
// apply it. The calls whose changes it carries share it (group commit): one
// set of peers to hear from, one channel closed for them all.
type waiter struct {
	ver     uint64
	need    map[string]struct{}
	done    chan struct{}
	err     error // set before done is closed
	callers int   // the calls still waiting for it; 0: every Wait gave up
}

// Join subscribes to the directory subjects, learns every registration
// already on the bus, announces this node and returns. ctx bounds the sync.
func Join(ctx context.Context, o Options) (*Directory, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Expiry <= 0 {
		o.Expiry = o.Heartbeat
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Directory{
		o:          o,
		nc:         o.Conn,
		peers:      make(map[string]*peer),
		waiters:    make(map[*waiter]struct{}),
		pend:       make(map[uint64]*Reg),
		commitWake: make(chan struct{}, 1),
		probing:    make(map[string]bool),
		dropped:    make(map[string]time.Time),
		reannounce: make(chan struct{}, 1),
		resync:     make(chan struct{}, 1),
		fetchChs:   make(map[string]chan *nats.Msg),
		// Repairs: 20 a second, bursts of 200.
		limiter: tokens{rate: 20, burst: 200},
	}
	d.digest = verHash(o.Node, 0)
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
	d.inbox = d.nc.NewInbox()
	// Announcements first: every change made after a member answers us below
	// reaches us, because our subscriptions propagate in order.
	for _, s := range []struct {
		subj string
		cb   nats.MsgHandler
	}{
		{o.Subjects.AnnAll(), d.onAnnouncement},
		{o.Subjects.NodeAck(o.Node), d.onAck},
		{o.Subjects.NodeDir(o.Node), d.onTableRequest},
		{o.Subjects.NodeProbe(o.Node), d.onProbe},
		{d.inbox + ".*", d.onFetchReply},
	} {
		sub, err := d.nc.Subscribe(s.subj, s.cb)
		if err != nil {
			return fail(fmt.Errorf("notifier: subscribe %s: %w", s.subj, err))
		}
		_ = sub.SetPendingLimits(-1, -1) // directory traffic is bounded by the bus size
		d.subs = append(d.subs, sub)
		switch s.subj {
		case d.inbox + ".*":
			d.replies = sub
		case o.Subjects.AnnAll():
			d.anns = sub
		}
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
	if err := d.sync(ctx, true); err != nil {
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
	d.wg.Add(2)
	go d.loop()
	go d.committer()
	return d, nil
}

func (d *Directory) addSub(s *nats.Subscription) {
	d.mu.Lock()
	d.subs = append(d.subs, s)
	d.mu.Unlock()
}

// Node returns this node's ID.
func (d *Directory) Node() string { return d.o.Node }

// Stats returns the directory's counters.
func (d *Directory) Stats() Stats {
	c := &d.stats
	return Stats{
		Undecodable: c.undecodable.Load(), Forged: c.forged.Load(),
		Fetches: c.fetches.Load(), FetchTimeouts: c.fetchTimeouts.Load(), RepairsSkipped: c.repairsSkipped.Load(),
		ProbesSent: c.probes.Load(), ProbesLate: c.probesLate.Load(), DropsDoubted: c.dropsDoubted.Load(), DropsReported: c.drops.Load(), Reannounced: c.reannounced.Load(),
		Rejoins: c.rejoins.Load(), DropsRefuted: c.refuted.Load(),
		Batches: c.batches.Load(), Changes: c.changes.Load(),
	}
}

// Lookup appends the registrations of kind k matching (object, cmd, id), on
// every node, to full and slices.
func (d *Directory) Lookup(k bus.Kind, object, cmd string, id int64, full, slices []Entry) ([]Entry, []Entry) {
	d.mu.RLock()
	full, slices = d.index[k].Lookup(object, cmd, id, full, slices)
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

// PeerCount returns the number of other nodes this node knows, without
// listing them.
func (d *Directory) PeerCount() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.peers)
}

// Len returns the number of registrations of kind k known bus-wide.
func (d *Directory) Len(k bus.Kind) int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.index[k].Len()
}

// Reconnected tells the directory its connection came back: it re-announces
// itself and re-learns the bus.
func (d *Directory) Reconnected() {
	d.reconnected.Store(time.Now().UnixNano()) // the grace starts now, not when the loop gets to it
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
		w = &waiter{ver: d.ver + 1, need: d.needLocked(), done: make(chan struct{})}
		d.waiters[w] = struct{}{}
		d.releaseLocked(w)
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

// loop probes the successors, re-announces this node when asked to, and
// resyncs after reconnects.
func (d *Directory) loop() {
	defer d.wg.Done()
	t := time.NewTicker(d.o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.probeRound()
		case <-d.reannounce:
			d.doReannounce()
		case <-d.resync:
			// No re-announcement and no fetch of known tables: after a
			// server restart every node reconnects at once, and the probes
			// find what changed meanwhile (rate-limited). Only members not
			// known yet are fetched.
			d.reconnected.Store(time.Now().UnixNano())
			if err := d.sync(d.ctx, false); err != nil && d.ctx.Err() == nil {
				d.o.Logger.Warn("notifier: directory resync failed", "err", err)
			}
		}
	}
}

// hello announces this node with its whole table and waits until every
// member it knows has applied it, so that from then on their registration
// changes wait for this node's acknowledgement too. A member that does not
// answer within the Timeout is left to the probes' repair.
func (d *Directory) hello(ctx context.Context) {
	d.mu.Lock()
	w := d.announceFullLocked(true)
	d.mu.Unlock()
	if w == nil {
		return
	}
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

// announceFullLocked publishes this node's whole table at its version, or
// a heartbeat (peers then fetch the table) when the table is too large for
// one message. With wait, it returns a waiter for every peer's
// acknowledgement.
func (d *Directory) announceFullLocked(wait bool) *waiter {
	a := announcement{Type: annFull, Node: d.o.Node, Ver: d.ver}
	size := 0
	for _, r := range d.ownRegsLocked() {
		size += len(r.Object) + len(r.Cmd) + 48
		a.Puts = append(a.Puts, r)
	}
	if int64(size) > d.nc.MaxPayload()/2 {
		a = announcement{Type: annHeartbeat, Node: d.o.Node, Ver: d.ver}
	}
	data, err := msgpack.Marshal(&a)
	if err == nil {
		err = d.nc.PublishMsg(&nats.Msg{Subject: d.o.Subjects.Ann(d.o.Node), Reply: d.o.Subjects.NodeAck(d.o.Node), Data: data})
	}
	if err != nil {
		d.o.Logger.Warn("notifier: announce", "err", err)
		return nil
	}
	if !wait || len(d.peers) == 0 {
		return nil
	}
	w := &waiter{ver: d.ver, need: d.needLocked(), done: make(chan struct{})}
	d.waiters[w] = struct{}{}
	d.releaseLocked(w)
	return w
}
