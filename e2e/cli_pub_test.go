package e2e

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/natsnotifier/notifier"
)

// gatewayTimeout bounds waiting for traffic sent with the CLI to arrive.
const gatewayTimeout = readyTimeout

// addr is "<object>.<cmd>.<id>", the tail of every data subject.
func addr(object, cmd string, id int64) string { return fmt.Sprintf("%s.%s.%d", object, cmd, id) }

// must fails t on a non-nil error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCLIPublish: `nats pub notifier.pub.<object>.<cmd>.<id> '<json>'`
// reaches every matching full registration once and exactly one of the
// matching slices on two Notifiers, whose Subscribers decode the JSON.
func TestCLIPublish(t *testing.T) { forEachServer(t, testCLIPublish) }

func testCLIPublish(t *testing.T, url string) {
	a, b := connect(t, url, 1), connect(t, url, 2)
	const object, cmd, id = "e2epub", "update", int64(-7) // negative: two's complement matching
	fullA, fullB := &recorder{}, &recorder{}
	sliceA, sliceB := &recorder{}, &recorder{}
	otherID, otherCmd := &recorder{}, &recorder{}
	rpc := &responder{name: "rpc"}
	must(t, a.Subscribe(object, notifier.Match{}, cmd, fullA))
	must(t, b.Subscribe(object, notifier.Exact(id), cmd, fullB))
	// Overlapping slices with different patterns on different Notifiers
	// compete in one draw: -7 is odd, so both match.
	const weightA, weightB = 1.0, 3.0
	must(t, a.Slice(object, notifier.Match{Mask: 1, Value: 1}, cmd, sliceA, weightA))
	must(t, b.Slice(object, notifier.Match{}, cmd, sliceB, weightB))
	must(t, b.Subscribe(object, notifier.Exact(id+1), cmd, otherID))
	must(t, a.Subscribe(object, notifier.Match{}, "other", otherCmd))
	must(t, a.RPCRegister(object, notifier.Match{}, cmd, rpc)) // a publish never reaches RPC registrations

	subject := "notifier.pub." + addr(object, cmd, id)
	const count = 60 // P(the weight-1 slice gets none) = 0.75^61 ≈ 2e-8
	natsCLI(t, url, "pub", "--count", fmt.Sprint(count), subject, `{"n":{{Count}},"name":"cli","tags":["a","b"]}`)
	eventually(t, gatewayTimeout, func() bool {
		return fullA.count() == count && fullB.count() == count && sliceA.count()+sliceB.count() == count
	}, func() string {
		return fmt.Sprintf("full %d and %d, slices %d+%d of %d", fullA.count(), fullB.count(), sliceA.count(), sliceB.count(), count)
	})
	// A last message through the same path gives stragglers (duplicates) a
	// chance to show before the exact counts are checked.
	natsCLI(t, url, "pub", "--no-templates", subject, `{"n":0,"name":"cli","tags":["a","b"]}`)
	eventually(t, gatewayTimeout, func() bool {
		return fullA.counts()[0] == 1 && fullB.counts()[0] == 1 && sliceA.counts()[0]+sliceB.counts()[0] == 1
	}, func() string { return "the last message did not arrive" })

	want := make(map[int]int, count+1)
	for i := 0; i <= count; i++ {
		want[i] = 1
	}
	for name, r := range map[string]*recorder{"full A": fullA, "full B": fullB} {
		if got := r.counts(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got n->count %v, want each of 0..%d once", name, got, count)
		}
	}
	slices := sliceA.counts()
	for n, c := range sliceB.counts() {
		slices[n] += c
	}
	if !reflect.DeepEqual(slices, want) {
		t.Errorf("slices together: got n->count %v, want each of 0..%d exactly once", slices, count)
	}
	// Weighted draw: B has weight 3 of 4. Binomial(61, 0.75): mean 45.75,
	// sd 3.4; 6 sd either side, and A must have been chosen at least once.
	if nb := sliceB.count(); nb < 26 || nb > count+1 || sliceA.count() == 0 {
		t.Errorf("slice draw: A %d, B %d of %d; want B in [26, %d] and A > 0", sliceA.count(), nb, count+1, count+1)
	}
	for name, r := range map[string]*recorder{"other id": otherID, "other cmd": otherCmd} {
		if n := r.count(); n != 0 {
			t.Errorf("%s: %d notifications, want 0", name, n)
		}
	}
	if n := rpc.calls.Load(); n != 0 {
		t.Errorf("RPC registration called %d times by publishes", n)
	}

	// The Subscribers decoded the JSON args, into a struct and into a map.
	for name, r := range map[string]*recorder{"full A": fullA, "full B": fullB, "slice A": sliceA, "slice B": sliceB} {
		got, maps, addrs, decErrs := r.snapshot()
		if len(decErrs) > 0 {
			t.Errorf("%s: decode errors %v", name, decErrs)
		}
		for i, p := range got {
			if p.Name != "cli" || !reflect.DeepEqual(p.Tags, []string{"a", "b"}) {
				t.Errorf("%s: decoded %+v", name, p)
			}
			if m := maps[i]; m["name"] != "cli" || m["n"] != float64(p.N) {
				t.Errorf("%s: decoded into a map %v", name, m)
			}
			if addrs[i] != addr(object, cmd, id) {
				t.Errorf("%s: notified for %s, want %s", name, addrs[i], addr(object, cmd, id))
			}
		}
	}
	if u := a.Stats().Undecodable + b.Stats().Undecodable; u != 0 {
		t.Errorf("Undecodable = %d, want 0", u)
	}
	if d := a.Stats().Delivered + b.Stats().Delivered; d != 3*(count+1) {
		t.Errorf("Delivered = %d, want %d", d, 3*(count+1))
	}
}
