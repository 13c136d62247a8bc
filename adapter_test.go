package notifier_test

import (
	"errors"
	"github.com/natsnotifier/notifier/internal/leaktest"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// fastHeartbeat makes peers that die without a goodbye expire quickly.
const fastHeartbeat = 100 * time.Millisecond

// fastReconnect makes Connect's connection come back quickly after a server
// restart.
var fastReconnect = notifier.WithNATSOptions(nats.ReconnectWait(10*time.Millisecond), nats.ReconnectJitter(0, 0))

// idsBetween returns the ids from..to-1.
func idsBetween(from, to int64) []int64 {
	var ids []int64
	for id := from; id < to; id++ {
		ids = append(ids, id)
	}
	return ids
}

func TestCloseStopsReceiving(t *testing.T) {
	s := testenv.Run(t)
	a := connect(t, s.URL(), bigQueue)
	b := connect(t, s.URL(), bigQueue)
	c := connect(t, s.URL(), bigQueue)
	const object, cmd = "closing", "c"
	fb, sb, fc, sc := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	for _, reg := range []struct {
		n     *notifier.Notifier
		r     *recorder
		slice bool
	}{{b, fb, false}, {b, sb, true}, {c, fc, false}, {c, sc, true}} {
		var err error
		if reg.slice {
			err = reg.n.Slice(object, notifier.Match{}, cmd, reg.r, 1)
		} else {
			err = reg.n.Subscribe(object, notifier.Match{}, cmd, reg.r)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Before: both Notifiers receive, and b's slice takes part in the draw.
	for id := range int64(50) {
		if err := a.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	fb.waitLen(t, 50, deliveryTimeout)
	fc.waitLen(t, 50, deliveryTimeout)
	waitSlices(t, a, 50, []*recorder{sb, sc}, b, c)
	if sb.Len() == 0 {
		t.Fatalf("b's slice got none of 50 publishes")
	}

	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	fbN, sbN, scN := fb.Len(), sb.Len(), sc.Len()
	// Right after Close returned: everything goes to c.
	for id := int64(100); id < 200; id++ {
		if err := a.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	fc.waitLen(t, 150, deliveryTimeout)
	pubFlush(t, a, c)
	if !poll(deliveryTimeout, func() bool { return sc.Len() >= scN+100 }) {
		t.Errorf("after b closed, c's slice got %d of 100 publishes, want all: the others kept routing to the closed Notifier", sc.Len()-scN)
	}
	checkOnce(t, "c's slice after b closed", idsBetween(100, 200), sliceFrom(sc, scN))
	if fb.Len() != fbN || sb.Len() != sbN {
		t.Errorf("the closed Notifier's destinations got %d (full) and %d (slice) notifications after Close returned", fb.Len()-fbN, sb.Len()-sbN)
	}
}

// sliceFrom returns a recorder holding r's notifications from index i on.
func sliceFrom(r *recorder, i int) *recorder {
	notes := r.Notes()
	return &recorder{notes: notes[min(i, len(notes)):]}
}

func TestDeadConnectionDropped(t *testing.T) {
	s := testenv.Run(t)
	hb := notifier.WithHeartbeat(fastHeartbeat)
	a := connect(t, s.URL(), hb, bigQueue)
	c := connect(t, s.URL(), hb, bigQueue)
	nc := testenv.Connect(t, s.URL())
	b, err := notifier.New(nc, hb, bigQueue)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	const object, cmd = "dead", "c"
	sb, sc, mark := &recorder{}, &recorder{}, &recorder{}
	if err := b.Slice(object, notifier.Match{}, cmd, sb, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Slice(object, notifier.Match{}, cmd, sc, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("deadmark", notifier.Match{}, cmd, mark); err != nil {
		t.Fatal(err)
	}
	for id := range int64(50) {
		if err := a.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitSlices(t, a, 50, []*recorder{sb, sc}, b, c)
	if sb.Len() == 0 {
		t.Fatalf("b's slice got none of 50 publishes")
	}

	// b's connection dies: no goodbye.
	nc.Close()
	start := time.Now()
	bound := 4 * fastHeartbeat // documented: silent for three heartbeats, checked every heartbeat
	deadline := start.Add(bound + 5*time.Second)
	next := int64(1000)
	for round := int64(0); ; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %v, publishes from a still reach the dead Notifier", time.Since(start))
		}
		roundStart := time.Since(start)
		from := next
		for ; next < from+20; next++ {
			if err := a.Publish(object, next, cmd, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Publish("deadmark", round, cmd, nil); err != nil {
			t.Fatal(err)
		}
		eventually(t, deliveryTimeout, func() bool { return mark.Has(round) }, "marker %d at c", round)
		all := poll(200*time.Millisecond, func() bool {
			got := 0
			for _, id := range sc.IDs() {
				if id >= from && id < next {
					got++
				}
			}
			return got == 20
		})
		if all {
			t.Logf("dead Notifier dropped after %v (bound %v)", roundStart, bound)
			if roundStart > bound+time.Second {
				t.Errorf("dead Notifier dropped after %v, documented bound %v", roundStart, bound)
			}
			return
		}
	}
}

func TestRecoveryAfterRestart(t *testing.T) {
	s := testenv.Run(t)
	opts := []notifier.Option{fastReconnect, notifier.WithHeartbeat(fastHeartbeat), bigQueue}
	a := connect(t, s.URL(), append(opts, notifier.WithRandSource(rand.NewPCG(5, 6)))...)
	b := connect(t, s.URL(), opts...)
	c := connect(t, s.URL(), opts...)
	const object, cmd = "recover", "c"
	fb, sb, fc, sc := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	if err := b.Subscribe(object, notifier.Match{}, cmd, fb); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{}, cmd, sb, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(object, notifier.Match{}, cmd, fc); err != nil {
		t.Fatal(err)
	}
	if err := c.Slice(object, notifier.Match{}, cmd, sc, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(object, -1, cmd, nil); err != nil {
		t.Fatal(err)
	}
	fb.waitLen(t, 1, deliveryTimeout)
	fc.waitLen(t, 1, deliveryTimeout)

	s.Restart(t)
	start := time.Now()

	// No user action: publish until both full registrations hear again.
	probe := int64(-1000)
	ok := poll(20*time.Second, func() bool {
		probe--
		_ = a.Publish(object, probe, cmd, nil) // may fail while reconnecting
		return hasBelow(fb, -1000) && hasBelow(fc, -1000)
	})
	if !ok {
		t.Fatalf("20s after the restart, a's publishes still do not reach both Notifiers (b: %d, c: %d notifications)", fb.Len(), fc.Len())
	}
	t.Logf("registrations work again %v after the restart", time.Since(start))

	// And the bus-wide rules hold again: every full registration once, one
	// slice per publish, both slices in the draw. A registration made now
	// must be confirmed by every peer, too.
	pubFlush(t, a, b)
	pubFlush(t, a, c)
	fbN, fcN, sbN, scN := fb.Len(), fc.Len(), sb.Len(), sc.Len()
	const n = 200
	for id := range int64(n) {
		if err := a.Publish(object, id, cmd, nil); err != nil {
			t.Fatalf("publish after recovery: %v", err)
		}
	}
	eventually(t, deliveryTimeout, func() bool { return fb.Len() >= fbN+n && fc.Len() >= fcN+n }, "full registrations hear %d publishes", n)
	eventually(t, deliveryTimeout, func() bool { return sb.Len()-sbN+sc.Len()-scN >= n }, "%d slice deliveries", n)
	pubFlush(t, a, b)
	pubFlush(t, a, c)
	newSB, newSC := sliceFrom(sb, sbN), sliceFrom(sc, scN)
	checkOnce(t, "b's full registration after the restart", seq(n), sliceFrom(fb, fbN))
	checkOnce(t, "c's full registration after the restart", seq(n), sliceFrom(fc, fcN))
	checkOnce(t, "slices after the restart", seq(n), newSB, newSC)
	checkBinomial(t, "b's slice after the restart", newSB.Len(), n, 0.5)
}

// hasBelow reports whether r holds an id below limit.
func hasBelow(r *recorder, limit int64) bool {
	for _, id := range r.IDs() {
		if id < limit {
			return true
		}
	}
	return false
}

func TestCloseDrains(t *testing.T) {
	t.Run("Connect", func(t *testing.T) {
		s := testenv.Run(t)
		a, err := notifier.Connect(s.URL(), bigQueue)
		if err != nil {
			t.Fatal(err)
		}
		testCloseDrains(t, s, a)
		if !a.Conn().IsClosed() {
			t.Errorf("Close left the connection Connect made open")
		}
		checkNoLeaks(t)
	})
	t.Run("New", func(t *testing.T) {
		s := testenv.Run(t)
		nc := testenv.Connect(t, s.URL())
		// A request makes nats.go keep its own reply subscription for
		// the connection's lifetime; make it before counting.
		if _, err := nc.Request("nobody.home", nil, deliveryTimeout); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("request: %v, want no responders", err)
		}
		before := nc.NumSubscriptions()
		a, err := notifier.New(nc, bigQueue)
		if err != nil {
			t.Fatal(err)
		}
		testCloseDrains(t, s, a)
		if nc.IsClosed() {
			t.Fatalf("Close closed the caller's connection")
		}
		if err := nc.Flush(); err != nil {
			t.Errorf("the caller's connection no longer works: %v", err)
		}
		sub, err := nc.SubscribeSync("after.close")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("after.close", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(deliveryTimeout); err != nil {
			t.Errorf("the caller's connection no longer works: %v", err)
		}
		_ = sub.Unsubscribe()
		if got := nc.NumSubscriptions(); got != before {
			t.Errorf("the caller's connection holds %d subscriptions after Close, %d before New", got, before)
		}
		checkNoLeaks(t)
	})
}

// testCloseDrains publishes from a to a local and a remote destination,
// closes a at once and checks that everything arrives. It closes every
// Notifier it uses.
func testCloseDrains(t *testing.T, s *testenv.Server, a *notifier.Notifier) {
	b, err := notifier.Connect(s.URL(), bigQueue)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const object, cmd, n = "drain", "c", 500
	local, remote := &slowRecorder{}, &recorder{}
	if err := a.Subscribe(object, notifier.Match{}, cmd, local); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(object, notifier.Match{}, cmd, remote); err != nil {
		t.Fatal(err)
	}
	for id := range int64(n) {
		if err := a.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := local.Len(); got != n {
		t.Errorf("local destination: %d of %d notifications when Close returned", got, n)
	}
	if !poll(deliveryTimeout, func() bool { return remote.Len() >= n }) {
		t.Errorf("remote destination: %d of %d notifications published before Close", remote.Len(), n)
	}
	checkOnce(t, "remote destination", seq(n), remote)
	if err := a.Close(); !errors.Is(err, notifier.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("close b: %v", err)
	}
}

// slowRecorder is a recorder whose Notify takes a little while, so that
// notifications are still queued when Close is called.
type slowRecorder struct{ recorder }

func (r *slowRecorder) Notify(object string, id int64, cmd string, args notifier.Args) {
	deadline := time.Now().Add(50 * time.Microsecond)
	for time.Now().Before(deadline) {
	}
	r.recorder.Notify(object, id, cmd, args)
}

func TestConnectOnEmptyBusWithWatcher(t *testing.T) {
	// The README recommends watching the traffic with `nats sub '<prefix>.>'`;
	// The package doc promises Connect on an empty bus well under a second.
	s := testenv.Run(t)
	watcher := testenv.Connect(t, s.URL())
	if _, err := watcher.Subscribe("notifier.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	connect(t, s.URL())
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Connect on an empty bus took %v with a `nats sub 'notifier.>'` watching, want well under a second", d)
	}
}

// TestStatsPeers: Stats.Peers counts the other Notifiers known, and falls
// when one leaves.
func TestStatsPeers(t *testing.T) {
	url := testenv.Run(t).URL()
	a := connect(t, url)
	if got := a.Stats().Peers; got != 0 {
		t.Fatalf("alone on the bus: Peers = %d, want 0", got)
	}
	b := connect(t, url)
	c := connect(t, url)
	for _, n := range []*notifier.Notifier{a, b, c} {
		eventually(t, 5*time.Second, func() bool { return n.Stats().Peers == 2 }, "Peers = %d, want 2", n.Stats().Peers)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return a.Stats().Peers == 1 && b.Stats().Peers == 1 },
		"after one left: Peers = %d and %d, want 1", a.Stats().Peers, b.Stats().Peers)
}

// TestCloseTimeoutLeavesNoGoroutine: a Close that times out on a handler that
// does not return reports it and leaves only that handler's goroutine, which
// ends when the handler returns.
func TestCloseTimeoutLeavesNoGoroutine(t *testing.T) {
	s := testenv.Run(t)
	n, err := notifier.Connect(s.URL(), notifier.WithCloseTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sub := newBlockingSub(t)
	if err := n.Subscribe("blocked", notifier.Exact(1), "c", sub); err != nil {
		t.Fatal(err)
	}
	if err := n.Publish("blocked", 1, "c", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify not called within 5s")
	}
	if err := n.Close(); err == nil {
		t.Fatal("Close returned nil with a handler still running past WithCloseTimeout")
	}
	if left := leaktest.Running(libGoroutines...); len(left) != 1 || !strings.Contains(left[0].Stack, "blockingSub") {
		t.Fatalf("after a timed-out Close want only the blocked handler left, got %s", leaktest.Report(left, 0))
	}
	close(sub.release)
	checkNoLeaks(t)
}

// TestCloseWhileDisconnected: with the server gone (the connection
// reconnecting), Close delivers what was received, does not wait for a
// drain that needs the server, and returns without error long before its
// WithCloseTimeout.
func TestCloseWhileDisconnected(t *testing.T) {
	s := testenv.Run(t)
	n, err := notifier.Connect(s.URL(), notifier.WithCloseTimeout(time.Minute),
		notifier.WithNATSOptions(nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int64, 16)
	sub := notifier.NewSubscriberFunc(func(_ string, id int64, _ string, _ notifier.Args) { got <- id })
	if err := n.Subscribe("o", notifier.Match{}, "c", sub); err != nil {
		t.Fatal(err)
	}
	if err := n.Publish("o", 1, "c", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(deliveryTimeout):
		t.Fatal("the notification before the shutdown did not arrive")
	}
	s.Shutdown()
	eventually(t, deliveryTimeout, func() bool { return !n.Conn().IsConnected() }, "the connection notices the server's shutdown")
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close while disconnected: %v", err)
		}
	case <-time.After(deliveryTimeout):
		t.Fatalf("Close while disconnected did not return within %v (its timeout is a minute)", deliveryTimeout)
	}
}
