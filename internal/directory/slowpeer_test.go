package directory

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestSlowPeerKept: a successor that answers every probe late, after the
// first attempt gave up but before the second did, lives: the answer to the
// first probe ends the second, so it is never dropped.
func TestSlowPeerKept(t *testing.T) {
	s := startServer(t)
	const expiry = 400 * time.Millisecond // attempts of 200 ms each
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withExpiry(expiry))
	r := newRawNode(t, s.URL(), "r1")
	r.announce(announcement{Type: annFull, Puts: []Reg{reg(7)}})
	r.expectAcks(0, "n1")
	r.set(func(r *rawNode) { r.late = expiry * 7 / 10 })

	// Six probes, each answered only in its second attempt's window.
	start := n1.Stats().ProbesSent
	eventually(t, 20*expiry, func() bool { return n1.Stats().ProbesSent >= start+12 }, "n1 probes r1 six times")
	if !slices.Contains(peers(n1), "r1") {
		t.Fatalf("n1 dropped r1, whose probe answers come late but in time (peers %v)", peers(n1))
	}
	if st := n1.Stats(); st.DropsReported != 0 {
		t.Fatalf("n1 reported %d drops of a slow but live successor", st.DropsReported)
	}
	if got := ids(n1, bus.KindPub, "r1"); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("n1 holds r1's registrations %v, want [7]", got)
	}
}

// TestTalkingPeerKept: a successor that leaves probes unanswered but keeps
// sending other messages (announcements here) is kept, and counted in
// ProbesLate; once it falls silent too it is dropped.
func TestTalkingPeerKept(t *testing.T) {
	s := startServer(t)
	const expiry = 200 * time.Millisecond
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withExpiry(expiry))
	r := newRawNode(t, s.URL(), "r1")
	r.announce(announcement{Type: annFull, Puts: []Reg{reg(7)}})
	r.expectAcks(0, "n1")
	r.freeze()

	stop := make(chan struct{})
	talked := make(chan struct{})
	go func() {
		defer close(talked)
		tick := time.NewTicker(expiry / 10)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				r.announce(announcement{Type: annHeartbeat}) // version 0: nothing to fetch
			}
		}
	}()
	eventually(t, waitTimeout, func() bool { return n1.Stats().ProbesLate >= 3 }, "n1 keeps its talking successor three times")
	close(stop)
	<-talked
	if !slices.Contains(peers(n1), "r1") {
		t.Fatalf("n1 dropped r1 while it talked (peers %v)", peers(n1))
	}
	silent := time.Now()
	eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), "r1") }, "n1 drops r1 once it is silent")
	if took, bound := time.Since(silent), testHeartbeat+expiry+time.Second; took > bound {
		t.Errorf("silent node dropped after %v, want within %v", took, bound)
	}
}

// TestFetchTimeoutKeepsPeer: a table fetch that gets no answer does not drop
// a node that answers its probes; the probes then see that its version is
// not the one held and fetch again, which brings its table.
func TestFetchTimeoutKeepsPeer(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	r := newRawNode(t, s.URL(), "r1")
	r.announce(announcement{Type: annFull, Puts: []Reg{reg(7)}})
	r.expectAcks(0, "n1")

	r.set(func(r *rawNode) { r.mute = true })
	r.answer(rawTable{ver: 2, regs: []Reg{reg(7), reg(8)}})
	served := r.servedCount()
	r.announce(announcement{Type: annDelta, Ver: 2, Puts: []Reg{reg(8)}}) // version 1 never came: a gap
	eventually(t, waitTimeout, func() bool { return n1.Stats().FetchTimeouts >= 1 }, "n1's fetch of r1 times out")
	if !slices.Contains(peers(n1), "r1") {
		t.Fatalf("n1 dropped r1 after a fetch timed out, although r1 answers probes (peers %v)", peers(n1))
	}
	if r.servedCount() <= served {
		t.Fatal("the timed-out fetch never reached r1")
	}

	r.set(func(r *rawNode) { r.mute = false })
	eventually(t, waitTimeout, func() bool { return slices.Equal(ids(n1, bus.KindPub, "r1"), []uint64{7, 8}) },
		"the probes repair r1's table (n1 holds %v)", ids(n1, bus.KindPub, "r1"))
}

// probingNow reports whether a probe of node is in flight.
func (d *Directory) probingNow(node string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.probing[node]
}

// TestFetchTimeoutProbesUnverified: a node only heard of (here: it probed
// us) whose table fetch gets no answer is probed at once: kept while it
// answers probes (a slow but live node), dropped when it answers neither (a
// leaving one), not kept as a ghost that no ring probe would reach.
func TestFetchTimeoutProbesUnverified(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	// o1 and o2 are n1's ring successors: the probe of r2 and r3 comes
	// from the fetch's timeout, not from a probe round.
	join(t, testenv.Connect(t, s.URL()), "o1")
	join(t, testenv.Connect(t, s.URL()), "o2")
	for _, tt := range []struct {
		name   string
		frozen bool
	}{{"r2", false}, {"r3", true}} {
		// n1 holds nothing of either: each is learned from its probe.
		r := newRawNode(t, s.URL(), tt.name)
		r.set(func(r *rawNode) { r.mute, r.frozen = true, tt.frozen })
		data, err := msgpack.Marshal(&probe{Node: tt.name})
		if err != nil {
			t.Fatal(err)
		}
		timeouts := n1.Stats().FetchTimeouts
		if _, err := r.nc.Request(testSubjects.NodeProbe("n1"), data, waitTimeout); err != nil {
			t.Fatalf("%s's probe of n1: %v", tt.name, err)
		}
		eventually(t, waitTimeout, func() bool { return n1.Stats().FetchTimeouts > timeouts }, "n1's fetch of %s times out", tt.name)
		if !tt.frozen {
			// Probed at once and answered (version 0, as held): kept.
			eventually(t, waitTimeout, func() bool { return r.probeCount() > 0 }, "n1 probes %s", tt.name)
			eventually(t, waitTimeout, func() bool { return !n1.probingNow(tt.name) }, "n1's probe of %s ends", tt.name)
			if !slices.Contains(peers(n1), tt.name) {
				t.Fatalf("n1 dropped %s, which answers probes", tt.name)
			}
			continue
		}
		eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), tt.name) }, "n1 drops %s, which answers nothing", tt.name)
	}
}

// TestDropReportDoubted: a drop another node reports for unanswered probes
// is not followed by a node that heard from the target within the Expiry;
// a drop NATS proved ("no responders") is followed at once.
func TestDropReportDoubted(t *testing.T) {
	s := startServer(t)
	const expiry = 10 * time.Second // "recently" covers the whole test
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withExpiry(expiry))
	reporter, _ := reporterAndTarget(t, s.URL(), 0)

	reporter.announce(announcement{Type: annDrop, Target: "r1"})
	eventually(t, waitTimeout, func() bool { return n1.Stats().DropsDoubted == 1 }, "n1 doubts the unproven drop of r1")
	if !slices.Contains(peers(n1), "r1") {
		t.Fatal("n1 followed a drop report for a node it just heard from")
	}
	reporter.announce(announcement{Type: annDrop, Target: "r1", Proven: true})
	eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), "r1") }, "n1 follows the proven drop of r1")
	if got := n1.Stats().DropsDoubted; got != 1 {
		t.Errorf("DropsDoubted = %d, want 1", got)
	}
}

// TestStarved: a prober judges nothing when its timer woke more than half a
// timeout late, or when replies wait undelivered in its inbox.
func TestStarved(t *testing.T) {
	d := &Directory{}
	if d.starved(0, time.Second) || d.starved(400*time.Millisecond, time.Second) {
		t.Error("starved with the timer on time")
	}
	if !d.starved(600*time.Millisecond, time.Second) {
		t.Error("not starved with the timer 600 ms late of 1 s")
	}
	s := startServer(t)
	nc := testenv.Connect(t, s.URL())
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	sub, err := nc.Subscribe("replies", func(*nats.Msg) { <-block })
	if err != nil {
		t.Fatal(err)
	}
	d.replies = sub
	if d.starved(0, time.Second) {
		t.Error("starved with an empty inbox")
	}
	for range 3 {
		if err := nc.Publish("replies", nil); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, waitTimeout, func() bool { n, _, _ := sub.Pending(); return n > 0 }, "replies wait in the inbox")
	if !d.starved(0, time.Second) {
		t.Error("not starved with replies waiting in the inbox")
	}
}

// TestManyUnproven: three drops for unanswered probes within two Heartbeats
// make further ones doubted; they age out after two Heartbeats; only the
// last few are kept.
func TestManyUnproven(t *testing.T) {
	d := &Directory{o: Options{Heartbeat: time.Second}}
	now := time.Now()
	for i := range maxUnproven {
		if d.manyUnprovenLocked(now) {
			t.Fatalf("doubting after %d drops", i)
		}
		d.noteUnprovenLocked(now.Add(time.Duration(i) * 100 * time.Millisecond))
	}
	if !d.manyUnprovenLocked(now.Add(time.Second)) {
		t.Errorf("%d drops within a second not many", maxUnproven)
	}
	if d.manyUnprovenLocked(now.Add(3 * time.Second)) {
		t.Error("drops older than two Heartbeats still counted")
	}
	for range 100 {
		d.noteUnprovenLocked(now)
	}
	if len(d.unproven) > 2*maxUnproven {
		t.Errorf("%d drops kept", len(d.unproven))
	}
}

// TestGCStarved: the collector's share is over a quarter of the
// processors or not; gcBusy grows with collections.
func TestGCStarved(t *testing.T) {
	for _, tt := range []struct {
		busy, window time.Duration
		procs        int
		want         bool
	}{
		{0, time.Second, 2, false},
		{500 * time.Millisecond, time.Second, 2, false}, // exactly a quarter
		{600 * time.Millisecond, time.Second, 2, true},
		{300 * time.Millisecond, time.Second, 1, true},
		{time.Second, 0, 2, false},
	} {
		if got := gcShareOver(tt.busy, tt.window, tt.procs); got != tt.want {
			t.Errorf("gcShareOver(%v, %v, %d) = %v, want %v", tt.busy, tt.window, tt.procs, got, tt.want)
		}
	}
	busy0 := gcBusy()
	for range 5 {
		runtime.GC()
	}
	if got := gcBusy(); got <= busy0 {
		t.Errorf("gcBusy %v after 5 collections, %v before", got, busy0)
	}
	if gcStarved(gcBusy(), time.Now().Add(-time.Second)) {
		t.Error("starved over a second without collections")
	}
}

// TestDroppedNodeAwaited: a node heard from again just after a reported
// drop is not fetched from (every node that dropped it would fetch at once)
// but learned from its own re-announcement, which also releases the
// acknowledgements owed for what it sent meanwhile.
func TestDroppedNodeAwaited(t *testing.T) {
	s := startServer(t)
	// Long periods: neither the probes nor the Expiry fetch during the test.
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withHeartbeat(time.Minute), withExpiry(time.Minute))
	reporter, target := reporterAndTarget(t, s.URL(), 1)
	fetches := n1.Stats().Fetches

	reporter.announce(announcement{Type: annDrop, Ver: 1, Target: "r1", Proven: true})
	eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), "r1") }, "n1 follows the proven drop of r1")

	// r1 lives and registers more before it hears of the drop.
	target.announce(announcement{Type: annDelta, Ver: 2, Puts: []Reg{reg(8)}})
	eventually(t, waitTimeout, func() bool { return slices.Contains(peers(n1), "r1") }, "n1 hears from r1 again")
	if got := ids(n1, bus.KindPub, "r1"); got != nil {
		t.Errorf("before r1's re-announcement n1 routes to %v of it, want none (a delta alone is not its table)", got)
	}
	// Its re-announcement: the whole table, one version up.
	target.announce(announcement{Type: annFull, Ver: 3, Puts: []Reg{reg(7), reg(8)}})
	target.expectAcks(3, "n1") // the delta's, owed until now
	target.expectAcks(3, "n1") // the table's
	if got := ids(n1, bus.KindPub, "r1"); !slices.Equal(got, list(7, 8)) {
		t.Errorf("after the re-announcement n1 routes to %v of r1, want [7 8]", got)
	}
	st := n1.Stats()
	if st.Fetches != fetches || target.servedCount() != 0 {
		t.Errorf("n1 fetched r1's table (%d fetches, %d served); want it learned from the re-announcement", st.Fetches-fetches, target.servedCount())
	}
	if st.Rejoins != 1 {
		t.Errorf("Rejoins = %d, want 1", st.Rejoins)
	}
	// From here it is a peer like any other.
	target.announce(announcement{Type: annDelta, Ver: 4, Dels: []uint64{7}})
	target.expectAcks(4, "n1")
	if got := ids(n1, bus.KindPub, "r1"); !slices.Equal(got, list(8)) {
		t.Errorf("after a later delta n1 routes to %v of r1, want [8]", got)
	}
}

// TestDroppedNodeFetchedAfterWait: a node heard from after a reported drop
// that does not re-announce itself within awaitWindow is fetched from after
// all, and what it sent meanwhile is acknowledged.
func TestDroppedNodeFetchedAfterWait(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withHeartbeat(100*time.Millisecond), withExpiry(300*time.Millisecond), withTimeout(time.Second))
	reporter, target := reporterAndTarget(t, s.URL(), 1)

	reporter.announce(announcement{Type: annDrop, Ver: 1, Target: "r1", Proven: true})
	eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), "r1") }, "n1 follows the proven drop of r1")
	target.answer(rawTable{ver: 2, regs: []Reg{reg(7), reg(8)}})
	target.announce(announcement{Type: annDelta, Ver: 2, Puts: []Reg{reg(8)}})
	target.expectAcks(2, "n1") // after the fetch
	if target.servedCount() == 0 {
		t.Error("r1's delta acknowledged without its table fetched")
	}
	if got := ids(n1, bus.KindPub, "r1"); !slices.Equal(got, list(7, 8)) {
		t.Errorf("n1 routes to %v of r1, want [7 8]", got)
	}
	if got := n1.Stats().Rejoins; got != 0 {
		t.Errorf("Rejoins = %d, want 0 (no re-announcement came)", got)
	}
}

// TestDropReportRefuted: a drop reported for unanswered probes, of a node
// not heard from within the Expiry, makes it a suspect, not a drop: heard
// from within the grace after the report, it is kept; silent, it is
// dropped.
func TestDropReportRefuted(t *testing.T) {
	s := startServer(t)
	const expiry = 400 * time.Millisecond
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withExpiry(expiry), withHeartbeat(time.Minute))
	reporter, target := reporterAndTarget(t, s.URL(), 1)
	spoke := time.Now()
	// The doubt for a node heard from within the Expiry must not decide.
	eventually(t, waitTimeout, func() bool { return time.Since(spoke) > expiry }, "an Expiry passes")

	reporter.announce(announcement{Type: annDrop, Ver: 1, Target: "r1"})
	reporter.announce(announcement{Type: annDelta, Ver: 1, Puts: []Reg{reg(1)}})
	reporter.expectAcks(1, "n1")                              // the report was handled before
	target.announce(announcement{Type: annHeartbeat, Ver: 1}) // r1 speaks: refuted
	eventually(t, waitTimeout, func() bool { return n1.Stats().DropsRefuted == 1 }, "n1 takes r1's heartbeat as a refutation")
	if !slices.Contains(peers(n1), "r1") || !slices.Equal(ids(n1, bus.KindPub, "r1"), list(7)) {
		t.Fatalf("n1 dropped r1 (peers %v) although it refuted the report", peers(n1))
	}

	spoke = time.Now()
	eventually(t, waitTimeout, func() bool { return time.Since(spoke) > expiry }, "an Expiry passes")
	reporter.announce(announcement{Type: annDrop, Ver: 1, Target: "r1"})
	eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), "r1") }, "n1 drops r1, silent after the report")
	if got := ids(n1, bus.KindPub, "r1"); got != nil {
		t.Errorf("n1 keeps r1's registrations %v after dropping it", got)
	}
	if got := n1.Stats().DropsRefuted; got != 1 {
		t.Errorf("DropsRefuted = %d, want 1", got)
	}
}

// TestSchedLagged: with many more goroutines spinning than processors,
// goroutines wait to run for many time slices, and schedLagged sees it.
func TestSchedLagged(t *testing.T) {
	s0 := readSched()
	if len(s0.counts) == 0 {
		t.Skip("this runtime has no /sched/latencies:seconds")
	}
	if schedLagged(s0, time.Hour) {
		t.Fatal("lagged an hour")
	}
	// 50 spinners per processor: each waits about 50 preemption slices
	// (10 ms each) between its turns, far more than the 20 ms asked.
	n := 50 * runtime.GOMAXPROCS(0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1000; i++ { // spin without a scheduling point
					_ = i * i
				}
			}
		}()
	}
	ok := poll(waitTimeout, func() bool { return schedLagged(s0, 20*time.Millisecond) })
	close(stop)
	wg.Wait()
	if !ok {
		t.Fatalf("%d goroutines spinning on %d processors: no goroutine waited 20 ms to run", n, runtime.GOMAXPROCS(0))
	}
}

// TestReconnectGrace: right after a reconnect (a server restart, when the
// whole bus reconnects and resyncs at once) a node neither follows a drop
// report for unanswered probes nor reports a silent successor; both work
// again once the grace (2×Timeout) is over.
func TestReconnectGrace(t *testing.T) {
	t.Run("reports", func(t *testing.T) {
		s := startServer(t)
		// No probe rounds: r1's answers to them would refute the reports.
		n1 := join(t, testenv.Connect(t, s.URL()), "n1", withHeartbeat(quiet), withExpiry(testExpiry))
		reporter, _ := reporterAndTarget(t, s.URL(), 0)
		setHeard := func(node string, at time.Time) {
			n1.mu.Lock()
			n1.peers[node].heard = at
			n1.mu.Unlock()
		}

		// A report, just after a reconnect, about a node not heard from
		// for long: doubted.
		n1.Reconnected()
		setHeard("r1", time.Now().Add(-time.Hour))
		reporter.announce(announcement{Type: annDrop, Target: "r1"})
		eventually(t, waitTimeout, func() bool { return n1.Stats().DropsDoubted == 1 }, "n1 doubts the report while just reconnected")
		if !slices.Contains(peers(n1), "r1") {
			t.Fatal("n1 followed a drop report right after its reconnect")
		}

		// The same report once the grace is over: followed (r1 is a raw
		// node that never refutes).
		n1.reconnected.Store(0)
		setHeard("r1", time.Now().Add(-time.Hour))
		reporter.announce(announcement{Type: annDrop, Target: "r1"})
		eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), "r1") }, "n1 follows the report after the grace")
	})
	t.Run("probes", func(t *testing.T) {
		s := startServer(t)
		n1 := join(t, testenv.Connect(t, s.URL()), "n1")
		r := newRawNode(t, s.URL(), "r0")
		r.announce(announcement{Type: annFull})
		r.expectAcks(0, "n1")
		// A frozen successor (r0 is n1's only peer) is not reported within
		// the grace of a reconnect, and is after it.
		r.freeze()
		start := time.Now()
		n1.Reconnected()
		late0 := n1.Stats().ProbesLate
		eventually(t, waitTimeout, func() bool { return n1.Stats().ProbesLate > late0 }, "n1 probes the frozen r0 and holds its judgement")
		if !slices.Contains(peers(n1), "r0") {
			t.Fatal("n1 dropped its silent successor within the reconnect grace")
		}
		eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(n1), "r0") }, "n1 drops the frozen r0 after the grace")
		if took := time.Since(start); took < 2*testTimeout {
			t.Errorf("frozen successor dropped %v after the reconnect, within the grace of %v", took, 2*testTimeout)
		}
	})
}

// reporterAndTarget joins two scripted nodes to a bus whose one directory
// is "n1": r0, with an empty table, to report drops, and r1, holding
// registration 7 at version ver, to be reported.
func reporterAndTarget(t *testing.T, url string, ver uint64) (reporter, target *rawNode) {
	t.Helper()
	reporter = newRawNode(t, url, "r0")
	reporter.announce(announcement{Type: annFull})
	reporter.expectAcks(0, "n1")
	target = newRawNode(t, url, "r1")
	target.announce(announcement{Type: annFull, Ver: ver, Puts: []Reg{reg(7)}})
	target.expectAcks(ver, "n1")
	return reporter, target
}
