package directory

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestClosedPeerDropped: a node whose connection dies without a goodbye is
// dropped by its ring predecessor at its next probe ("no responders"), with
// its registrations, by every peer (the drop is announced), and changes
// waiting for its acknowledgement are released.
func TestClosedPeerDropped(t *testing.T) {
	s := startServer(t)
	nc1 := testenv.Connect(t, s.URL())
	n1 := join(t, nc1, "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	n3 := join(t, testenv.Connect(t, s.URL()), "n3")
	announce(t, n1, []Reg{reg(1)}, nil)

	nc1.Close()
	start := time.Now()
	p := n2.Announce([]Reg{reg(2)}, nil)
	bound := testHeartbeat + testExpiry + time.Second
	if err := p.Wait(bound); err != nil {
		t.Fatalf("Wait for a change n1 cannot confirm: %v (after %v)", err, time.Since(start))
	}
	for _, d := range []*Directory{n2, n3} {
		eventually(t, bound, func() bool { return !slices.Contains(peers(d), "n1") }, "%s drops n1", d.Node())
		if got := ids(d, bus.KindPub, "n1"); got != nil {
			t.Fatalf("n1 was dropped but %s keeps its registrations %v", d.Node(), got)
		}
	}
	if got := n2.Stats().DropsReported + n3.Stats().DropsReported; got < 1 {
		t.Fatalf("%d drops reported by the probes", got)
	}
	t.Logf("closed node dropped after %v (probe every %v)", time.Since(start), testHeartbeat)
}

// TestFrozenPeerDropped: a node that stops answering (a stopped process,
// TCP still open) is dropped after two unanswered probes, by every peer.
func TestFrozenPeerDropped(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	r := newRawNode(t, s.URL(), "r1")
	r.announce(announcement{Type: annFull, Puts: []Reg{reg(7)}})
	r.expectAcks(0, "n1", "n2")
	r.freeze()
	start := time.Now()
	for _, d := range []*Directory{n1, n2} {
		eventually(t, waitTimeout, func() bool { return !slices.Contains(peers(d), "r1") }, "%s drops the frozen r1", d.Node())
	}
	if took, bound := time.Since(start), testHeartbeat+testExpiry+time.Second; took > bound {
		t.Errorf("frozen node dropped after %v, want within %v", took, bound)
	}
	if got := n1.Len(bus.KindPub) + n2.Len(bus.KindPub); got != 0 {
		t.Fatalf("%d registrations of r1 left", got)
	}
}

// TestPendingTimeoutDropAndClose: Wait reports a timeout, is released by
// Drop, and reports ErrClosed once the directory is closed; Close gives up
// waiting for the goodbye's acknowledgement after the Timeout. The peer is a
// scripted node that never acknowledges anything.
func TestPendingTimeoutDropAndClose(t *testing.T) {
	s := startServer(t)
	const timeout = 200 * time.Millisecond
	logs := newLogRecorder()
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withExpiry(time.Minute), withTimeout(timeout), withLogger(slog.New(logs)))
	r := newRawNode(t, s.URL(), "r1")
	r.announce(announcement{Type: annHeartbeat})
	r.expectAcks(0, "n1") // n1 knows r1

	if err := n1.Announce([]Reg{reg(1)}, nil).Wait(20 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait for a peer that does not confirm: err = %v, want context.DeadlineExceeded", err)
	}
	n1.mu.RLock()
	waiters := len(n1.waiters)
	n1.mu.RUnlock()
	if waiters != 0 {
		t.Fatalf("%d waiters left after the timeout", waiters)
	}

	p := n1.Announce([]Reg{reg(2)}, nil)
	n1.Drop("r1")
	if err := p.Wait(waitTimeout); err != nil {
		t.Fatalf("Wait after the peer was dropped: %v", err)
	}
	n1.Drop("nobody") // no-op

	r.announce(announcement{Type: annHeartbeat})
	r.expectAcks(0, "n1") // n1 knows r1 again
	p = n1.Announce([]Reg{reg(3)}, nil)
	start := time.Now()
	n1.Close()
	if took := time.Since(start); took < timeout {
		t.Errorf("Close returned after %v, though r1 never acknowledged the goodbye (timeout %v)", took, timeout)
	}
	if got := logs.count("notifier: not every peer confirmed the goodbye"); got != 1 {
		t.Errorf("%d warnings about the unconfirmed goodbye, want 1", got)
	}
	if err := p.Wait(waitTimeout); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close: err = %v, want ErrClosed", err)
	}
	if err := n1.Announce([]Reg{reg(4)}, nil).Wait(waitTimeout); !errors.Is(err, ErrClosed) {
		t.Fatalf("Announce after Close: err = %v, want ErrClosed", err)
	}
	n1.Close() // a second Close is harmless
}

// TestCloseSaysGoodbye: Close returns once the peers acknowledged the
// goodbye, and they forget the node long before its expiry.
func TestCloseSaysGoodbye(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withExpiry(time.Minute))
	n2 := join(t, testenv.Connect(t, s.URL()), "n2", withExpiry(time.Minute))
	announce(t, n2, []Reg{reg(1)}, nil)
	start := time.Now()
	n2.Close()
	if took := time.Since(start); took >= testTimeout/2 {
		t.Errorf("Close took %v: the goodbye was not acknowledged", took)
	}
	// Polled: a heartbeat of n2 sent just before its goodbye was
	// acknowledged may make n1 look for n2 once more, briefly.
	eventually(t, time.Second, func() bool { return peers(n1) == nil }, "n1 forgets n2 after its goodbye")
	if got := ids(n1, bus.KindPub, "n2"); got != nil {
		t.Fatalf("n1 forgot n2 but keeps its registrations %v", got)
	}
	if err := n1.Announce([]Reg{reg(2)}, nil).Wait(time.Nanosecond); err != nil {
		t.Fatalf("n1 alone: Wait = %v", err)
	}
}

// TestCloseNotConfirmedByEarlierAck: Close waits until every peer has
// dropped the node, so an acknowledgement the peer sent for an earlier
// change, before it read the goodbye, does not confirm the goodbye.
func TestCloseNotConfirmedByEarlierAck(t *testing.T) {
	s := startServer(t)
	const timeout = 300 * time.Millisecond
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withExpiry(time.Minute), withTimeout(timeout))
	r := newRawNode(t, s.URL(), "r1")
	anns := r.watch("n1")
	r.announce(announcement{Type: annHeartbeat})
	r.expectAcks(0, "n1")

	_ = n1.Announce([]Reg{reg(1)}, nil) // version 1
	d1, _ := r.next(anns, annDelta)
	_ = n1.Announce([]Reg{reg(2)}, nil) // version 2
	d2, _ := r.next(anns, annDelta)
	start := time.Now()
	closed := make(chan struct{})
	go func() { n1.Close(); close(closed) }()
	r.next(anns, annBye)
	// r1 acknowledges the deltas only now, and never the goodbye.
	r.ack(d1.Reply, 1)
	r.ack(d2.Reply, 2)
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close hangs")
	}
	if took := time.Since(start); took < timeout {
		t.Fatalf("Close returned after %v, on the acknowledgements of versions 1 and 2, though r1 never acknowledged the goodbye (timeout %v)", took, timeout)
	}
}

// TestClosingNodeNotRelearned: while Close waits for a slow peer to
// acknowledge the goodbye, the peers that already dropped the node must not
// learn it again, or they route to it after Close.
func TestClosingNodeNotRelearned(t *testing.T) {
	s := startServer(t)
	const timeout = 300 * time.Millisecond // Close waits this long for r1
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withTimeout(timeout), withExpiry(time.Minute))
	n2 := join(t, testenv.Connect(t, s.URL()), "n2", withExpiry(time.Minute))
	announce(t, n1, []Reg{reg(1)}, nil)
	r := newRawNode(t, s.URL(), "r1") // known to n1, never acknowledges
	r.announce(announcement{Type: annHeartbeat})
	r.expectAcks(0, "n1", "n2")
	n2.Drop("r1") // r1 sends no heartbeat: it stays unknown to n2

	n1.Close()
	if got := peers(n2); slices.Contains(got, "n1") {
		t.Errorf("after n1's Close returned, n2 knows %v", got)
	}
	if got := ids(n2, bus.KindPub, "n1"); got != nil {
		t.Errorf("after n1's Close returned, n2 routes to n1's registrations %v", got)
	}
}

// TestDropComesBack: a dropped live node is learned again by the probes
// (it probes the node that dropped it, which then fetches its table),
// registrations included.
func TestDropComesBack(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	announce(t, n1, []Reg{reg(1), reg(2)}, nil)
	n2.Drop("n1")
	if got := peers(n2); got != nil {
		t.Fatalf("after Drop n2 knows %v", got)
	}
	if got := ids(n2, bus.KindPub, "n1"); got != nil {
		t.Fatalf("after Drop n2 keeps n1's registrations %v", got)
	}
	eventually(t, waitTimeout, func() bool {
		return slices.Equal(peers(n2), []string{"n1"}) && slices.Equal(ids(n2, bus.KindPub, "n1"), list(1, 2))
	}, "n2 learns n1 again")
	announce(t, n1, []Reg{reg(3)}, nil)
	if got := ids(n2, bus.KindPub, "n1"); !slices.Equal(got, list(1, 2, 3)) {
		t.Fatalf("n2 knows n1's registrations %v, want [1 2 3]", got)
	}
}

// reconnectingConn connects with fast reconnects and calls Reconnected on
// the directory stored in d after each reconnect, counting the calls in
// calls unless it is nil.
func reconnectingConn(t *testing.T, url string, d *atomic.Pointer[Directory], calls *atomic.Int32, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append(fastReconnect(), opts...)
	opts = append(opts, nats.ReconnectHandler(func(*nats.Conn) {
		if dir := d.Load(); dir != nil {
			dir.Reconnected()
			if calls != nil {
				calls.Add(1)
			}
		}
	}))
	return testenv.Connect(t, url, opts...)
}

// waitConnected waits until every connection is connected again and the
// server has its subscriptions. A flush fails if the connection drops
// meanwhile (a disconnect noticed late), so it is retried.
func waitConnected(t *testing.T, conns ...*nats.Conn) {
	t.Helper()
	for _, nc := range conns {
		eventually(t, waitTimeout, func() bool { return nc.IsConnected() && nc.FlushTimeout(time.Second) == nil }, "reconnected")
	}
}

// TestOnPeerGone: the hook hears of a peer's goodbye and of a closed
// peer's drop, once each, and not of live peers.
func TestOnPeerGone(t *testing.T) {
	s := startServer(t)
	gone := make(chan string, 8)
	hook := func(o *Options) { o.OnPeerGone = func(n string) { gone <- n } }
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", hook, withExpiry(5*testHeartbeat))
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	nc3 := testenv.Connect(t, s.URL())
	join(t, nc3, "n3")
	eventually(t, waitTimeout, func() bool { return slices.Equal(peers(n1), []string{"n2", "n3"}) }, "n1 knows n2 and n3")

	n2.Close()
	if got := next(t, gone); got != "n2" {
		t.Fatalf("after n2's goodbye OnPeerGone(%q), want n2", got)
	}
	nc3.Close() // silent: no goodbye
	if got := next(t, gone); got != "n3" {
		t.Fatalf("after n3 fell silent OnPeerGone(%q), want n3", got)
	}
	select {
	case n := <-gone:
		t.Fatalf("OnPeerGone(%q) once more", n)
	default:
	}
}

func next(t *testing.T, c <-chan string) string {
	t.Helper()
	select {
	case n := <-c:
		return n
	case <-time.After(waitTimeout):
		t.Fatal("OnPeerGone not called")
		return ""
	}
}
