package notifier_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// deliveryTimeout bounds the wait for a notification that must arrive.
const deliveryTimeout = 10 * time.Second

// bigQueue lets the bulk tests publish faster than the Subscribers run
// without the bounded queues dropping anything.
var bigQueue = notifier.WithQueueSize(1 << 14)

// flushSeq makes every pubFlush marker unique.
var flushSeq atomic.Int64

// pubFlush proves that recv has handled everything pub published to it so
// far: it publishes a marker from pub to a fresh registration on recv and
// waits for it. Messages from one Notifier to another are handled in order,
// so every earlier publish has been dispatched by recv when the marker
// arrives.
func pubFlush(t testing.TB, pub, recv *notifier.Notifier) {
	t.Helper()
	id := flushSeq.Add(1)
	r := &recorder{}
	if err := recv.Subscribe("flush", notifier.Exact(id), "mark", r); err != nil {
		t.Fatalf("flush: subscribe: %v", err)
	}
	if err := pub.Publish("flush", id, "mark", nil); err != nil {
		t.Fatalf("flush: publish: %v", err)
	}
	r.waitLen(t, 1, deliveryTimeout)
	if err := recv.Unsubscribe("flush", notifier.Exact(id), "mark", r); err != nil {
		t.Fatalf("flush: unsubscribe: %v", err)
	}
}

// sorted returns a sorted copy of ids.
func sorted(ids []int64) []int64 {
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
}

// seq returns the ids 0..n-1.
func seq(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(i)
	}
	return ids
}

// matches is the matching rule of the package doc, written independently of the library.
func matches(m notifier.Match, id int64) bool { return id&m.Mask == m.Value }

func TestMatchingRules(t *testing.T) {
	s := testenv.Run(t)
	// The publisher joins first, so that recv knows it when registering
	// (see TestRegisterRightAfterPeerJoined for the other order).
	remote := connect(t, s.URL())
	recv := connect(t, s.URL())
	t.Run("remote", func(t *testing.T) { testMatching(t, "mremote", remote, recv) })
	t.Run("local", func(t *testing.T) { testMatching(t, "mlocal", recv, recv) })
}

// testMatching registers on recv under object and publishes from pub.
func testMatching(t *testing.T, object string, pub, recv *notifier.Notifier) {
	const cmd = "c"
	type reg struct {
		name     string
		patterns []notifier.Match // each registered once for the same recorder
		rec      *recorder
	}
	regs := []*reg{
		{name: "all", patterns: []notifier.Match{{}}},
		{name: "exact5", patterns: []notifier.Match{notifier.Exact(5)}},
		{name: "exact-7", patterns: []notifier.Match{notifier.Exact(-7)}},
		{name: "low nibble 9", patterns: []notifier.Match{{Mask: 0xF, Value: 9}}},
		{name: "negative", patterns: []notifier.Match{{Mask: math.MinInt64, Value: math.MinInt64}}},
		{name: "value outside mask", patterns: []notifier.Match{{Mask: 0xF0, Value: 0x01}}},
		{name: "value outside mask, negative", patterns: []notifier.Match{{Mask: 1, Value: -1}}},
		{name: "two overlapping patterns", patterns: []notifier.Match{notifier.Exact(5), {Mask: 1, Value: 1}}},
		{name: "same registration twice", patterns: []notifier.Match{notifier.Exact(5), notifier.Exact(5)}},
	}
	for _, r := range regs {
		r.rec = &recorder{}
		for _, p := range r.patterns {
			if err := recv.Subscribe(object, p, cmd, r.rec); err != nil {
				t.Fatalf("%s: subscribe %+v: %v", r.name, p, err)
			}
		}
	}
	otherObject, otherCmd := &recorder{}, &recorder{}
	if err := recv.Subscribe(object+"x", notifier.Match{}, cmd, otherObject); err != nil {
		t.Fatal(err)
	}
	if err := recv.Subscribe(object, notifier.Match{}, cmd+"x", otherCmd); err != nil {
		t.Fatal(err)
	}

	ids := []int64{0, 5, -7, 9, -8, 1, math.MinInt64, math.MaxInt64, -1, 0xF1}
	for _, id := range ids {
		if err := pub.Publish(object, id, cmd, id); err != nil {
			t.Fatalf("publish %d: %v", id, err)
		}
	}
	if err := pub.Publish(object+"x", 3, cmd, nil); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(object, 4, cmd+"x", nil); err != nil {
		t.Fatal(err)
	}

	want := make(map[*reg][]int64)
	for _, r := range regs {
		seen := map[notifier.Match]bool{}
		for _, p := range r.patterns {
			if seen[p] {
				continue // registering the same key twice is one registration
			}
			seen[p] = true
			for _, id := range ids {
				if matches(p, id) {
					want[r] = append(want[r], id)
				}
			}
		}
	}
	for _, r := range regs {
		eventually(t, deliveryTimeout, func() bool { return r.rec.Len() >= len(want[r]) },
			"%s %+v: got ids %v, want %v", r.name, r.patterns, lazyIDs{r.rec}, want[r])
	}
	otherObject.waitLen(t, 1, deliveryTimeout)
	otherCmd.waitLen(t, 1, deliveryTimeout)
	pubFlush(t, pub, recv)

	for _, r := range regs {
		if got, w := sorted(r.rec.IDs()), sorted(want[r]); !slices.Equal(got, w) {
			t.Errorf("%s %+v: got ids %v, want %v", r.name, r.patterns, got, w)
		}
		for _, n := range r.rec.Notes() {
			var v int64
			if err := n.Args.Decode(&v); err != nil || v != n.ID || n.Object != object || n.Cmd != cmd {
				t.Errorf("%s: got %s/%d/%s args %v (%v), want %s/%d/%s args %d", r.name, n.Object, n.ID, n.Cmd, v, err, object, n.ID, cmd, n.ID)
			}
		}
	}
	if got := otherObject.Notes(); len(got) != 1 || got[0].ID != 3 || got[0].Object != object+"x" {
		t.Errorf("other object: got %+v, want only id 3", got)
	}
	if got := otherCmd.Notes(); len(got) != 1 || got[0].ID != 4 || got[0].Cmd != cmd+"x" {
		t.Errorf("other cmd: got %+v, want only id 4", got)
	}
}

// dual is both a Subscriber and a Responder.
type dual struct {
	recorder
	calls atomic.Int64
}

func (d *dual) RPCCall(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	d.calls.Add(1)
	return "dual", nil
}

var (
	_ notifier.Subscriber = (*dual)(nil)
	_ notifier.Responder  = (*dual)(nil)
)

func TestNotificationsAndRPCAreSeparate(t *testing.T) {
	s := testenv.Run(t)
	a := connect(t, s.URL())
	b := connect(t, s.URL())
	const object, cmd = "sep", "c"
	sub, slice, rpcFull, rpcSlice := &dual{}, &dual{}, &dual{}, &dual{}
	if err := b.Subscribe(object, notifier.Match{}, cmd, sub); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{}, cmd, slice, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.RPCRegister(object, notifier.Match{}, cmd, rpcFull); err != nil {
		t.Fatal(err)
	}
	if err := b.RPCSlice(object, notifier.Match{}, cmd, rpcSlice, 1); err != nil {
		t.Fatal(err)
	}

	for _, pub := range []*notifier.Notifier{a, b} {
		if err := pub.Publish(object, 1, cmd, "n"); err != nil {
			t.Fatal(err)
		}
	}
	sub.waitLen(t, 2, deliveryTimeout)
	slice.waitLen(t, 2, deliveryTimeout)
	pubFlush(t, a, b)

	for _, caller := range []*notifier.Notifier{a, b} {
		ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
		res, err := caller.RPC(ctx, object, 2, cmd, "q")
		cancel()
		if err != nil {
			t.Fatalf("rpc: %v", err)
		}
		if len(res) != 2 {
			t.Fatalf("rpc: got %d results, want 2 (the full and the slice RPC registration): %+v", len(res), res)
		}
		for _, r := range res {
			var v string
			if err := r.Decode(&v); err != nil || v != "dual" {
				t.Errorf("rpc result: %q, %v; want \"dual\"", v, err)
			}
		}
	}

	if n := rpcFull.Len() + rpcSlice.Len(); n != 0 {
		t.Errorf("RPC registrations got %d notifications, want 0", n)
	}
	if n := sub.calls.Load() + slice.calls.Load(); n != 0 {
		t.Errorf("notification registrations got %d RPCs, want 0", n)
	}
	if got := rpcFull.calls.Load(); got != 2 {
		t.Errorf("full RPC registration: %d calls, want 2", got)
	}
	if got := rpcSlice.calls.Load(); got != 2 {
		t.Errorf("RPC slice: %d calls, want 2", got)
	}
	if sub.Len() != 2 || slice.Len() != 2 {
		t.Errorf("after the RPCs: subscriber has %d, slice %d notifications, want 2 each", sub.Len(), slice.Len())
	}

	// Only notification registrations: an RPC finds nobody.
	if err := b.Subscribe("seponly", notifier.Match{}, cmd, sub); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RPC(context.Background(), "seponly", 1, cmd, nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Errorf("RPC to an object with only subscriptions: %v, want ErrNoResponders", err)
	}
}

// sigmas is the tolerance of the statistical tests, in standard deviations
// of the binomial distribution: a correct library fails with probability
// below 1e-8 per check.
const sigmas = 6

// checkBinomial fails t if got successes out of n trials are further than
// sigmas standard deviations from the mean of Binomial(n, p).
func checkBinomial(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > sigmas*sd {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f (p=%.3f, %d sigma)", what, got, n, mean, sigmas*sd, p, sigmas)
	}
}

// waitSlices waits until the recorders hold n notifications in all, then
// flushes every receiver so a surplus would show.
func waitSlices(t *testing.T, pub *notifier.Notifier, n int, recs []*recorder, recvs ...*notifier.Notifier) {
	t.Helper()
	total := func() int {
		s := 0
		for _, r := range recs {
			s += r.Len()
		}
		return s
	}
	eventually(t, 30*time.Second, func() bool { return total() >= n }, "%d slice deliveries", n)
	for _, recv := range recvs {
		pubFlush(t, pub, recv)
	}
	if got := total(); got != n {
		t.Errorf("slice deliveries: %d, want exactly %d (one per publish)", got, n)
	}
}

// checkOnce fails t unless the recorders together hold every id of want
// exactly once.
func checkOnce(t *testing.T, what string, want []int64, recs ...*recorder) {
	t.Helper()
	var got []int64
	for _, r := range recs {
		got = append(got, r.IDs()...)
	}
	if got, want := sorted(got), sorted(want); !slices.Equal(got, want) {
		t.Errorf("%s: got ids %s, want each of %s once", what, fmtIDs(got), fmtIDs(want))
	}
}

func TestSliceSplitAcrossNotifiers(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL(), notifier.WithRandSource(rand.NewPCG(1, 2)), bigQueue)
	a := connect(t, s.URL(), bigQueue)
	b := connect(t, s.URL(), bigQueue)
	c := connect(t, s.URL(), bigQueue)
	const object, cmd = "split", "c"

	// Overlapping patterns on different Notifiers, unequal weights:
	// id%4 == 0 matches all three (1:2:3), id%4 == 2 matches a and b (1:2),
	// an odd id matches a only.
	sa, sb, sc := &recorder{}, &recorder{}, &recorder{}
	if err := a.Slice(object, notifier.Match{}, cmd, sa, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{Mask: 1, Value: 0}, cmd, sb, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Slice(object, notifier.Match{Mask: 3, Value: 0}, cmd, sc, 3); err != nil {
		t.Fatal(err)
	}
	nodes := []*notifier.Notifier{pub, a, b, c}
	full := make([]*recorder, len(nodes))
	for i, n := range nodes {
		full[i] = &recorder{}
		if err := n.Subscribe(object, notifier.Match{}, cmd, full[i]); err != nil {
			t.Fatal(err)
		}
	}

	const n = 3000
	for id := range int64(n) {
		if err := pub.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range full {
		f.waitLen(t, n, 30*time.Second)
	}
	waitSlices(t, pub, n, []*recorder{sa, sb, sc}, a, b, c)

	for i, f := range full {
		checkOnce(t, fmt.Sprintf("full registration on Notifier %d", i), seq(n), f)
	}
	checkOnce(t, "slices", seq(n), sa, sb, sc)
	class := func(r *recorder, mod int64) int {
		c := 0
		for _, id := range r.IDs() {
			if id%4 == mod || (mod == 1 && id%2 == 1) {
				c++
			}
		}
		return c
	}
	if got := class(sb, 1) + class(sc, 1) + class(sc, 2); got != 0 {
		t.Errorf("%d notifications reached a slice whose pattern does not match", got)
	}
	if got := class(sa, 1); got != n/2 {
		t.Errorf("odd ids at the only matching slice: %d, want %d", got, n/2)
	}
	checkBinomial(t, "id%4==0 at weight 1 of 1+2+3", class(sa, 0), n/4, 1.0/6)
	checkBinomial(t, "id%4==0 at weight 2 of 1+2+3", class(sb, 0), n/4, 2.0/6)
	checkBinomial(t, "id%4==0 at weight 3 of 1+2+3", class(sc, 0), n/4, 3.0/6)
	checkBinomial(t, "id%4==2 at weight 1 of 1+2", class(sa, 2), n/4, 1.0/3)
	checkBinomial(t, "id%4==2 at weight 2 of 1+2", class(sb, 2), n/4, 2.0/3)
}

func TestSliceStandby(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL(), notifier.WithRandSource(rand.NewPCG(3, 4)), bigQueue)
	a := connect(t, s.URL(), bigQueue)
	b := connect(t, s.URL(), bigQueue)
	c := connect(t, s.URL(), bigQueue)
	const object, cmd = "standby", "c"
	// Two standbys match every id; one weighted slice matches even ids.
	za, zc, active := &recorder{}, &recorder{}, &recorder{}
	if err := a.Slice(object, notifier.Match{}, cmd, za, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Slice(object, notifier.Match{}, cmd, zc, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{Mask: 1, Value: 0}, cmd, active, 0.001); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for id := range int64(n) {
		if err := pub.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitSlices(t, pub, n, []*recorder{za, zc, active}, a, b, c)
	checkOnce(t, "slices", seq(n), za, zc, active)
	var odd []int64
	for i := 1; i < n; i += 2 {
		odd = append(odd, int64(i))
	}
	// Even ids: a positive weight, however small, always beats standby.
	checkOnce(t, "even ids at the weighted slice", sorted(slices.DeleteFunc(seq(n), func(id int64) bool { return id%2 == 1 })), active)
	// Odd ids: only standbys match; they share uniformly.
	checkOnce(t, "odd ids at the standbys", odd, za, zc)
	checkBinomial(t, "odd ids at standby a of 2", za.Len(), n/2, 0.5)
}

func TestOrderPerRegistration(t *testing.T) {
	s := testenv.Run(t)
	a := connect(t, s.URL(), bigQueue)
	b := connect(t, s.URL(), bigQueue)
	const object, cmd, n = "order", "c", 1000
	remoteFull, remoteSlice, local := &recorder{}, &recorder{}, &recorder{}
	if err := b.Subscribe(object, notifier.Match{}, cmd, remoteFull); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{}, cmd, remoteSlice, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Subscribe(object, notifier.Match{}, cmd, local); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := a.Publish(object, int64(i), cmd, i); err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]*recorder{"remote full": remoteFull, "remote slice": remoteSlice, "local": local} {
		r.waitLen(t, n, 30*time.Second)
		if got := r.IDs(); !slices.Equal(got, seq(n)) {
			t.Errorf("%s: ids out of order: %s", name, fmtIDs(got))
		}
		for i, no := range r.Notes() {
			var v int
			if err := no.Args.Decode(&v); err != nil || v != i {
				t.Errorf("%s: payload %d is %d (%v)", name, i, v, err)
				break
			}
		}
	}
}
