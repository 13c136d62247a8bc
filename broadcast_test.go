package notifier_test

import (
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// Full registrations for every id (Match{}) are reached on the shared
// fan-out subject <prefix>.fan.<object>.<cmd>.<id>; the others on their
// Notifier's node subject. These tests mix both on one (object, cmd).

func TestBroadcastAndSpecificRegistrations(t *testing.T) {
	s := testenv.Run(t)
	a, b := connect(t, s.URL()), connect(t, s.URL())
	both, allB, exactA := &recorder{}, &recorder{}, &recorder{}
	// both: one destination under Match{} and Exact(5) on B: twice per id 5.
	for _, err := range []error{
		b.Subscribe("bc", notifier.Match{}, "c", both),
		b.Subscribe("bc", notifier.Exact(5), "c", both),
		b.Subscribe("bc", notifier.Match{}, "c", allB),
		a.Subscribe("bc", notifier.Exact(5), "c", exactA),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	const n = 200
	for i := range int64(n) {
		if err := a.Publish("bc", i%10, "c", i); err != nil {
			t.Fatal(err)
		}
	}
	pubFlush(t, a, b)
	allB.waitLen(t, n, deliveryTimeout)
	both.waitLen(t, n+n/10, deliveryTimeout)
	exactA.waitLen(t, n/10, deliveryTimeout)
	if got := both.Count(5); got != 2*n/10 {
		t.Errorf("destination under Match{} and Exact(5): %d notifications for id 5, want %d", got, 2*n/10)
	}
	// Per registration, publish order holds on both paths.
	for _, r := range []*recorder{allB, exactA} { // both: two registrations interleave
		if seq := argSeq(t, r); !slices.IsSorted(seq) {
			t.Errorf("notifications out of publish order: %v", seq)
		}
	}

	// Without its Match{} registrations, B gets only what Exact(5) matches.
	if err := b.Unsubscribe("bc", notifier.Match{}, "c", both); err != nil {
		t.Fatal(err)
	}
	if err := b.UnsubscribeAll(allB); err != nil {
		t.Fatal(err)
	}
	before := both.Len()
	for i := range int64(10) {
		if err := a.Publish("bc", i, "c", i); err != nil {
			t.Fatal(err)
		}
	}
	pubFlush(t, a, b)
	exactA.waitLen(t, n/10+1, deliveryTimeout)
	both.waitLen(t, before+1, deliveryTimeout)
	pubFlush(t, a, b)
	if got := both.Len() - before; got != 1 {
		t.Errorf("after removing Match{}: %d notifications, want 1 (id 5 only)", got)
	}
	if allB.Len() != n {
		t.Errorf("UnsubscribeAll: %d notifications, want %d", allB.Len(), n)
	}
}

// argSeq returns the int64 arguments (publish sequence numbers) a recorder
// received, in arrival order.
func argSeq(t *testing.T, r *recorder) []int64 {
	t.Helper()
	var out []int64
	for _, n := range r.Notes() {
		var v int64
		if err := n.Args.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestBroadcastModeChange(t *testing.T) {
	s := testenv.Run(t)
	a, b := connect(t, s.URL()), connect(t, s.URL())
	r := &recorder{}
	// Full for every id, then the same registration made a slice: one
	// delivery per publish either way, never two.
	if err := b.Subscribe("mc", notifier.Match{}, "c", r); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("mc", 1, "c", 1); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 1, deliveryTimeout)
	if err := b.Slice("mc", notifier.Match{}, "c", r, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("mc", 2, "c", 2); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 2, deliveryTimeout)
	if err := b.Subscribe("mc", notifier.Match{}, "c", r); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("mc", 3, "c", 3); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 3, deliveryTimeout)
	pubFlush(t, a, b)
	if got := r.IDs(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("got ids %v, want [1 2 3]", got)
	}
}

func TestBroadcastSubjectVisible(t *testing.T) {
	s := testenv.Run(t)
	a, b := connect(t, s.URL()), connect(t, s.URL())
	if err := b.Subscribe("vis", notifier.Match{}, "c", &recorder{}); err != nil {
		t.Fatal(err)
	}
	watch := testenv.Connect(t, s.URL())
	seen := make(chan string, 16)
	if _, err := watch.Subscribe("notifier.fan.>", func(m *nats.Msg) { seen <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("vis", -3, "c", nil); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != "notifier.fan.vis.c.-3" {
		t.Errorf("fan-out subject %q, want notifier.fan.vis.c.-3", got)
	}
	_ = a.Close()
	_ = b.Close()
	checkNoLeaks(t)
}

// A slice notification that reaches a Notifier after its slice registration
// left is drawn again among the remaining slices, and only a slice gets it:
// the full registrations had their copy already.
func TestRerouteDrawsOnlyASlice(t *testing.T) {
	s := testenv.Run(t)
	b, c := connect(t, s.URL()), connect(t, s.URL())
	fullB, fullAll, sliceC := &recorder{}, &recorder{}, &recorder{}
	for _, err := range []error{
		b.Subscribe("rr", notifier.Exact(1), "c", fullB),
		c.Subscribe("rr", notifier.Match{}, "c", fullAll),
		c.Slice("rr", notifier.Match{}, "c", sliceC, 1),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// What a peer with a stale directory sends: "deliver to your slice
	// 999", which B does not have (flags FlagSlice, uvarint 999, msgpack nil).
	raw := testenv.Connect(t, s.URL())
	frame := []byte{2, 0xe7, 0x07, 0xc0}
	if err := raw.Publish("notifier.node."+b.Node()+".pub.rr.c.1", frame); err != nil {
		t.Fatal(err)
	}
	sliceC.waitLen(t, 1, deliveryTimeout)
	pubFlush(t, b, c)
	pubFlush(t, c, b)
	if fullB.Len() != 0 || fullAll.Len() != 0 {
		t.Errorf("re-routed slice notification reached full registrations: %d + %d, want 0", fullB.Len(), fullAll.Len())
	}
	if sliceC.Len() != 1 {
		t.Errorf("slice got %d, want 1", sliceC.Len())
	}
}
