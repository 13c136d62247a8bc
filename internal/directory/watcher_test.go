package directory

import (
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestWildcardWatcher: a plain subscription on ">" (as `nats sub '>'`)
// receives every directory request without answering, so "no responders"
// never comes. A join of a non-empty bus does not depend on it (a member
// answers), and a registration change does not wait for a node heard of
// only through a fake heartbeat, whose table fetch the watcher swallows:
// the ghost is still being fetched when the change is confirmed.
// (The one case that waits: joining an empty bus takes the SyncTimeout,
// see the README "Scale" section.)
func TestWildcardWatcher(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withTimeout(waitTimeout))
	watcher := testenv.Connect(t, s.URL())
	seen := make(chan struct{}, 1024)
	if _, err := watcher.Subscribe(">", func(*nats.Msg) {
		select {
		case seen <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	n2 := join(t, testenv.Connect(t, s.URL()), "n2", withTimeout(waitTimeout))
	if got := peers(n2); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("n2 joined knowing %v", got)
	}
	data, err := msgpack.Marshal(&announcement{Type: annHeartbeat, Node: "ghost", Ver: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Publish(testSubjects.Ann("ghost"), data); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() bool { return slices.Contains(peers(n1), "ghost") }, "n1 starts learning the ghost")
	announce(t, n1, []Reg{reg(1)}, nil)
	if !slices.Contains(peers(n1), "ghost") {
		t.Fatal("the change was confirmed only after the ghost's fetch gave up")
	}
	if got := ids(n2, bus.KindPub, "n1"); !slices.Equal(got, list(1)) {
		t.Fatalf("n2 knows n1's %v", got)
	}
	if len(seen) == 0 {
		t.Fatal("the watcher saw nothing")
	}
}
