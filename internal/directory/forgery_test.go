package directory

import (
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestForgery: a message on one node's subject naming another is ignored
// and counted; a forged goodbye, next-version delta or far-future delta in
// a live node's name is repaired by that node's re-announcement (one
// message), and starts no stream of table fetches.
func TestForgery(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	announce(t, n1, []Reg{reg(1), reg(2)}, nil)
	raw := testenv.Connect(t, s.URL())
	pub := func(subj string, a announcement) {
		t.Helper()
		data, err := msgpack.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Publish(subj, data); err != nil {
			t.Fatal(err)
		}
	}
	whole := func() bool { return slices.Equal(ids(n2, bus.KindPub, "n1"), list(1, 2)) }

	// Claiming another node than the subject: ignored, counted by both.
	pub(testSubjects.Ann("x"), announcement{Type: annBye, Node: "n1"})
	for _, d := range []*Directory{n1, n2} {
		eventually(t, waitTimeout, func() bool { return d.Stats().Forged == 1 }, "%s counts the misattributed message", d.Node())
	}
	if !whole() {
		t.Fatalf("n2 holds n1's %v after a misattributed goodbye", ids(n2, bus.KindPub, "n1"))
	}

	cases := []announcement{
		{Type: annBye, Node: "n1", Ver: 2},
		{Type: annDelta, Node: "n1", Ver: n1.Stats().Batches + 1, Dels: list(1, 2)},
		{Type: annDelta, Node: "n1", Ver: 1 << 62, Dels: list(1, 2)},
	}
	for i, a := range cases {
		fetches := n2.Stats().Fetches
		reann := n1.Stats().Reannounced
		n1.mu.RLock()
		a.Ver = max(a.Ver, n1.ver+1)
		if i == 2 {
			a.Ver = 1 << 62
		}
		n1.mu.RUnlock()
		pub(testSubjects.Ann("n1"), a)
		eventually(t, waitTimeout, func() bool { return n1.Stats().Reannounced > reann }, "case %d: n1 re-announces itself", i)
		eventually(t, waitTimeout, whole, "case %d: n2 holds n1's registrations again", i)
		if got := n2.Stats().Fetches - fetches; got > 1 {
			t.Errorf("case %d: %d table fetches, want at most 1", i, got)
		}
	}
	// And changes still apply in order afterwards.
	announce(t, n1, []Reg{reg(3)}, nil)
	if got := ids(n2, bus.KindPub, "n1"); !slices.Equal(got, list(1, 2, 3)) {
		t.Fatalf("after the forgeries n2 knows n1's %v", got)
	}
}
