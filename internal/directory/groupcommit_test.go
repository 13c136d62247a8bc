package directory

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// quiet is a probe period no test outlasts: the server then carries only
// the announcements and acknowledgements of the changes under test.
const quiet = time.Hour

// gcReg is registration id of object "o<id>", so one Lookup finds exactly it.
func gcReg(id uint64) Reg {
	return Reg{ID: id, Kind: bus.KindPub, Object: fmt.Sprintf("o%d", id), Cmd: "c"}
}

// routes reports whether d routes object "o<id>" to node's registration id.
func routes(d *Directory, node string, id uint64) bool {
	full, _ := d.Lookup(bus.KindPub, fmt.Sprintf("o%d", id), "c", 1, nil, nil)
	for _, e := range full {
		if e.Key == (RegRef{Node: node, ID: id}) {
			return true
		}
	}
	return false
}

// TestGroupCommitConcurrent: 10 goroutines each make 30 changes in a row
// (put a registration, delete the one it put before) on a bus of 6 nodes.
// When each change's Wait returns, every peer routes to the new
// registration and no longer to the deleted one (SPEC §5). Concurrent
// changes share announcements: fewer announcements than changes, and the
// server carries exactly one announcement and one acknowledgement per peer
// for each announcement — fewer messages than one round per change.
func TestGroupCommitConcurrent(t *testing.T) {
	const (
		nPeers = 5
		g      = 10 // goroutines
		k      = 30 // changes each
	)
	s := startServer(t)
	a := join(t, testenv.Connect(t, s.URL()), "a", withHeartbeat(quiet))
	var ps []*Directory
	for i := range nPeers {
		ps = append(ps, join(t, testenv.Connect(t, s.URL()), fmt.Sprintf("p%d", i), withHeartbeat(quiet)))
	}
	for _, d := range append([]*Directory{a}, ps...) {
		eventually(t, waitTimeout, func() bool { return len(d.Peers()) == nPeers }, "%s knows the %d others", d.Node(), nPeers)
	}
	// The joins' last messages may be counted after they were delivered:
	// start from a count that stopped moving.
	in0 := settledInMsgs(t, s)
	st0 := a.Stats()

	start := make(chan struct{})
	errs := make(chan error, g)
	var wg sync.WaitGroup
	for gi := range g {
		wg.Go(func() {
			<-start
			var prev uint64
			for ki := range k {
				id := uint64(gi*k + ki + 1)
				var dels []uint64
				if prev != 0 {
					dels = []uint64{prev}
				}
				if err := a.Announce([]Reg{gcReg(id)}, dels).Wait(waitTimeout); err != nil {
					errs <- fmt.Errorf("change %d: %w", id, err)
					return
				}
				for _, p := range ps {
					if !routes(p, "a", id) {
						errs <- fmt.Errorf("Wait of change %d returned, but %s does not route to it", id, p.Node())
						return
					}
					if prev != 0 && routes(p, "a", prev) {
						errs <- fmt.Errorf("Wait of change %d returned, but %s still routes to deleted %d", id, p.Node(), prev)
						return
					}
				}
				prev = id
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	st := a.Stats()
	changes, batches := st.Changes-st0.Changes, st.Batches-st0.Batches
	// The server adds a read's messages to its counters after it has
	// delivered them: the last acknowledgements may not be counted yet.
	var in uint64
	poll(waitTimeout, func() bool {
		v1, err := s.Server().Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		in = uint64(v1.InMsgs - in0)
		return in >= batches*(1+nPeers)
	})
	t.Logf("%d changes from %d goroutines in %d announcements (%.1f a round); server messages in: %d (%d one round per change would take)",
		changes, g, batches, float64(changes)/float64(batches), in, changes*(1+nPeers))
	if changes != g*k {
		t.Fatalf("Stats.Changes grew by %d, want %d", changes, g*k)
	}
	// Each goroutine waits for its change before the next: an
	// announcement carries at most one change of each.
	if batches*g < changes {
		t.Errorf("%d announcements for %d changes of %d goroutines: some carried more than one change per goroutine", batches, changes, g)
	}
	if batches >= changes {
		t.Errorf("%d announcements for %d concurrent changes: no group commit", batches, changes)
	}
	// While one announcement waits for its acknowledgements the other
	// goroutines' changes queue for the next: measured 5 to 6 changes an
	// announcement here (under -race, -cpu 1 and 2, a loaded machine);
	// fewer than 2 means the rounds no longer overlap.
	if batches*2 > changes {
		t.Errorf("%d announcements for %d changes: fewer than two changes a round", batches, changes)
	}
	// Every announcement costs one message in and one acknowledgement per
	// peer; nothing else runs (no probes). All of them are counted: every
	// announcement had a Wait, which returned only after the last peer's
	// acknowledgement reached the server.
	if want := batches * (1 + nPeers); in != want {
		t.Errorf("server messages in: %d, want %d (%d announcements, each with %d acknowledgements)", in, want, batches, nPeers)
	}
	for _, p := range ps {
		if got := len(ids(p, bus.KindPub, "a")); got != 0 {
			t.Errorf("%s: %d registrations of \"o\"", p.Node(), got)
		}
		if got, want := p.Len(bus.KindPub), g; got != want {
			t.Errorf("%s knows %d registrations, want %d (the last of each goroutine)", p.Node(), got, want)
		}
	}
}

// settledInMsgs returns the server's count of messages in once three
// readings 20 ms apart agree (or at waitTimeout).
func settledInMsgs(t *testing.T, s *testenv.Server) int64 {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(waitTimeout)
	var last int64 = -1
	for same := 0; same < 2 && time.Now().Before(deadline); <-tick.C {
		v, err := s.Server().Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.InMsgs == last {
			same++
		} else {
			last, same = v.InMsgs, 0
		}
	}
	return last
}

// stalledPeer is a node on its own raw connection that speaks the directory
// protocol by hand: it joins with an empty table, records every delta of
// the nodes it hears and acknowledges only when told.
type stalledPeer struct {
	nc     *nats.Conn
	mu     sync.Mutex
	deltas []announcement
	replys []string
}

func newStalledPeer(t *testing.T, url, node string) *stalledPeer {
	t.Helper()
	sp := &stalledPeer{nc: testenv.Connect(t, url)}
	if _, err := sp.nc.Subscribe(testSubjects.AnnAll(), func(m *nats.Msg) {
		var a announcement
		if msgpack.Unmarshal(m.Data, &a) != nil || a.Type != annDelta {
			return
		}
		sp.mu.Lock()
		sp.deltas = append(sp.deltas, a)
		sp.replys = append(sp.replys, m.Reply)
		sp.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	data, err := msgpack.Marshal(&announcement{Type: annFull, Node: node, Ver: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.nc.Publish(testSubjects.Ann(node), data); err != nil {
		t.Fatal(err)
	}
	if err := sp.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sp
}

// received returns the deltas received so far and the IDs they put.
func (sp *stalledPeer) received() ([]announcement, map[uint64]bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	put := make(map[uint64]bool)
	for _, a := range sp.deltas {
		for _, r := range a.Puts {
			put[r.ID] = true
		}
	}
	return append([]announcement(nil), sp.deltas...), put
}

// ackLast acknowledges the last delta received, as node.
func (sp *stalledPeer) ackLast(t *testing.T, node string) {
	t.Helper()
	sp.mu.Lock()
	last, reply := sp.deltas[len(sp.deltas)-1], sp.replys[len(sp.replys)-1]
	sp.mu.Unlock()
	data, err := msgpack.Marshal(&ack{Node: node, Ver: last.Ver})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.nc.Publish(reply, data); err != nil {
		t.Fatal(err)
	}
}

// TestGroupCommitBound: with a peer that withholds its acknowledgements,
// the committer sends the next announcement only once commitLinger has
// passed, so changes made within a span of time T go out in at most
// 2 + T/commitLinger announcements, however many there are (here 400, from
// 8 goroutines, none waiting). The peer receives them all, in order, and
// its one acknowledgement of the last announcement confirms every change.
func TestGroupCommitBound(t *testing.T) {
	const (
		g = 8
		k = 50
	)
	s := startServer(t)
	a := join(t, testenv.Connect(t, s.URL()), "a", withHeartbeat(quiet))
	sp := newStalledPeer(t, s.URL(), "z")
	eventually(t, waitTimeout, func() bool { return len(a.Peers()) == 1 }, "a learns the stalled peer")
	st0 := a.Stats()

	pend := make([][]*Pending, g)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for gi := range g {
		wg.Go(func() {
			<-begin
			for ki := range k {
				pend[gi] = append(pend[gi], a.Announce([]Reg{gcReg(uint64(gi*k + ki + 1))}, nil))
			}
		})
	}
	t0 := time.Now()
	close(begin)
	wg.Wait()
	span := time.Since(t0)

	eventually(t, waitTimeout, func() bool { _, put := sp.received(); return len(put) == g*k }, "the stalled peer receives all %d changes", g*k)
	deltas, _ := sp.received()
	st := a.Stats()
	changes, batches := st.Changes-st0.Changes, st.Batches-st0.Batches
	bound := 2 + uint64(span/commitLinger)
	t.Logf("%d changes made in %v went out in %d announcements (bound %d)", changes, span, batches, bound)
	if changes != g*k {
		t.Fatalf("Stats.Changes grew by %d, want %d", changes, g*k)
	}
	if batches > bound {
		t.Errorf("%d announcements for changes made within %v: want at most %d with a %v linger", batches, span, bound, commitLinger)
	}
	if batches >= changes {
		t.Errorf("%d announcements for %d changes: no group commit", batches, changes)
	}
	if uint64(len(deltas)) != batches {
		t.Errorf("the peer received %d deltas, a counted %d announcements", len(deltas), batches)
	}
	for i := 1; i < len(deltas); i++ {
		if deltas[i].Ver != deltas[i-1].Ver+1 {
			t.Errorf("delta %d has version %d after %d", i, deltas[i].Ver, deltas[i-1].Ver)
		}
	}

	// Nothing is confirmed while the peer is silent ...
	if err := pend[0][0].Wait(time.Millisecond); err == nil {
		t.Fatal("a change was confirmed before the peer acknowledged anything")
	}
	// ... and its one acknowledgement of the last version confirms all the
	// others (the first one above was abandoned by its timed-out Wait).
	sp.ackLast(t, "z")
	for gi := range pend {
		for ki, p := range pend[gi] {
			if gi == 0 && ki == 0 {
				continue
			}
			if err := p.Wait(waitTimeout); err != nil {
				t.Fatalf("change %d after the acknowledgement: %v", gi*k+ki+1, err)
			}
		}
	}
}

// TestGroupCommitSlowRounds: when every round takes longer than
// commitLinger (here a peer acknowledges each announcement after 60 ms),
// the committer lingers longer rather than sending the next announcement
// while one is in flight: 10 callers that began at different times, each
// making its changes one after another, share rounds of several changes.
// Sending after the fixed 20 ms put rounds of one to three changes in
// flight at once (on 1,000 Notifiers sharing 2 cores: 330 announcements
// for 1,000 changes of 10 callers, each costing every peer the same).
func TestGroupCommitSlowRounds(t *testing.T) {
	const (
		g     = 10
		k     = 8
		delay = 60 * time.Millisecond
	)
	s := startServer(t)
	a := join(t, testenv.Connect(t, s.URL()), "a", withHeartbeat(quiet))
	sp := newStalledPeer(t, s.URL(), "z")
	eventually(t, waitTimeout, func() bool { return len(a.Peers()) == 1 }, "a learns the slow peer")
	// The peer acknowledges every delta delay after it arrived.
	slow := testenv.Connect(t, s.URL())
	if _, err := slow.Subscribe(testSubjects.AnnAll(), func(m *nats.Msg) {
		var d announcement
		if msgpack.Unmarshal(m.Data, &d) != nil || d.Type != annDelta || m.Reply == "" {
			return
		}
		data, err := msgpack.Marshal(&ack{Node: "z", Ver: d.Ver})
		if err != nil {
			return
		}
		time.AfterFunc(delay, func() { _ = slow.Publish(m.Reply, data) })
	}); err != nil {
		t.Fatal(err)
	}
	if err := slow.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = sp // it announced "z"; slow answers for it
	st0 := a.Stats()
	errs := make(chan error, g)
	var wg sync.WaitGroup
	// Staggered starts, one every 7 ms, shape the load: the callers do not
	// come back together.
	stagger := time.NewTicker(7 * time.Millisecond)
	defer stagger.Stop()
	for gi := range g {
		if gi > 0 {
			<-stagger.C
		}
		wg.Go(func() {
			for ki := range k {
				if err := a.Announce([]Reg{gcReg(uint64(gi*k + ki + 1))}, nil).Wait(waitTimeout); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := a.Stats()
	changes, batches := st.Changes-st0.Changes, st.Batches-st0.Batches
	t.Logf("%d changes of %d callers over rounds of %v: %d announcements (%.1f changes each)", changes, g, delay, batches, float64(changes)/float64(batches))
	// Each caller waits for its change, so a round carries at most one
	// change of each: k rounds at the least. Measured: 13 or 14
	// announcements; with a fixed 20 ms linger and 5 ms gather, 26.
	if bound := 2*k + 4; batches > uint64(bound) {
		t.Errorf("%d announcements for %d changes of %d callers: rounds overlapped (want at most %d)", batches, changes, g, bound)
	}
}

// TestWaitCoversIndirectPeersThatAnswered: a peer known only indirectly
// (its table not fetched yet) that has acknowledged one of our
// announcements knows us and applies our changes, so a change waits for
// it; one that never answered us is not waited for (it may not know us,
// and its fetch of our table is rate-limited).
func TestWaitCoversIndirectPeersThatAnswered(t *testing.T) {
	s := startServer(t)
	join(t, testenv.Connect(t, s.URL()), "a")
	b := join(t, testenv.Connect(t, s.URL()), "b")
	join(t, testenv.Connect(t, s.URL()), "c")
	eventually(t, waitTimeout, func() bool { return b.PeerCount() == 2 }, "b learns c")
	b.mu.Lock()
	pa, pc := b.peers["a"], b.peers["c"]
	answered := pa.answered // a acknowledged b's arrival
	pa.unverified, pc.unverified = true, true
	pc.answered = false
	need := b.needLocked()
	pa.unverified, pc.unverified = false, false
	b.mu.Unlock()
	if !answered {
		t.Fatal("a never acknowledged b's arrival")
	}
	if _, ok := need["a"]; !ok {
		t.Fatalf("a change does not wait for a, which answered b: need %v", need)
	}
	if _, ok := need["c"]; ok {
		t.Fatalf("a change waits for c, only heard of: need %v", need)
	}
}
