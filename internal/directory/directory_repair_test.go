package directory

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestVersionGapRepair drives a directory with a scripted node. A peer acks
// an announcement only once its copy of the table reaches the announced
// version, so each ack is the event after which the table is checked.
func TestVersionGapRepair(t *testing.T) {
	s := startServer(t)
	d := join(t, testenv.Connect(t, s.URL()), "n2", withExpiry(time.Minute)) // the raw node sends no heartbeats
	r := newRawNode(t, s.URL(), "r1")
	regs := func(ids ...uint64) []Reg {
		out := make([]Reg, len(ids))
		for i, id := range ids {
			out[i] = reg(id)
		}
		return out
	}
	check := func(step string, served int, want ...uint64) {
		t.Helper()
		if got := ids(d, bus.KindPub, "r1"); !slices.Equal(got, want) {
			t.Fatalf("%s: n2 knows r1's registrations %v, want %v", step, got, want)
		}
		if got := r.servedCount(); got != served {
			t.Fatalf("%s: r1 served %d table requests, want %d", step, got, served)
		}
	}

	// An unknown node's heartbeat makes n2 fetch its table.
	r.announce(announcement{Type: annHeartbeat, Ver: 0})
	r.expectAcks(0, "n2")
	if got := peers(d); !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("n2 knows %v, want [r1]", got)
	}
	check("first heartbeat", 1)

	// Delta 1 is lost; delta 2 reveals the gap and n2 fetches the table.
	r.answer(rawTable{2, regs(1, 2)})
	r.announce(announcement{Type: annDelta, Ver: 2, Puts: regs(2)})
	r.expectAcks(2, "n2")
	check("gap at delta 2", 2, 1, 2)

	// The next delta in order applies without a fetch.
	r.announce(announcement{Type: annDelta, Ver: 3, Puts: regs(3)})
	r.expectAcks(3, "n2")
	check("delta 3 in order", 2, 1, 2, 3)

	// Deltas 4 and 5 are lost; a heartbeat carrying version 5 reveals it.
	r.answer(rawTable{5, regs(1, 2, 3, 4, 5)})
	r.announce(announcement{Type: annHeartbeat, Ver: 5})
	r.expectAcks(5, "n2")
	check("gap at heartbeat 5", 3, 1, 2, 3, 4, 5)

	// Delta 6 is lost; the table served is the one of version 6, older
	// than delta 7 that revealed the gap: n2 applies delta 7 on top.
	r.answer(rawTable{6, regs(1, 2, 3, 4, 5, 6)})
	r.announce(announcement{Type: annDelta, Ver: 7, Puts: regs(7), Dels: list(1)})
	r.expectAcks(7, "n2")
	check("table 6 then delta 7", 4, 2, 3, 4, 5, 6, 7)

	// Deltas 8 and 9 are lost; the first table served is of version 8,
	// still short of delta 10: n2 fetches again and gets version 10.
	r.answer(rawTable{8, regs(2, 3, 4, 5, 6, 7, 8)}, rawTable{10, regs(2, 3, 4, 5, 6, 7, 8, 9, 10)})
	r.announce(announcement{Type: annDelta, Ver: 10, Puts: regs(10)})
	r.expectAcks(10, "n2")
	check("table 8, table 10", 6, 2, 3, 4, 5, 6, 7, 8, 9, 10)

	// A stale delta changes nothing and is acked with the current version.
	r.announce(announcement{Type: annDelta, Ver: 4, Puts: regs(99), Dels: list(2)})
	r.expectAcks(10, "n2")
	check("stale delta 4", 6, 2, 3, 4, 5, 6, 7, 8, 9, 10)

	// Goodbye forgets the node and its registrations.
	r.announce(announcement{Type: annBye})
	eventually(t, waitTimeout, func() bool { return peers(d) == nil }, "n2 forgets r1 after its goodbye")
	check("goodbye", 6)
	if d.Len(bus.KindPub) != 0 {
		t.Fatalf("n2 still holds %d registrations", d.Len(bus.KindPub))
	}
}

// TestOversizedAnnouncement: a change too large for one message fails to be
// announced but stays in effect; the peers learn it from the version of the
// next heartbeat.
func TestOversizedAnnouncement(t *testing.T) {
	s := startServer(t)
	nc1 := testenv.Connect(t, s.URL())
	n1 := join(t, nc1, "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	long := strings.Repeat("x", bus.MaxNameLen)
	n := int(nc1.MaxPayload())/(2*bus.MaxNameLen) + 1
	puts := make([]Reg, n)
	for i := range puts {
		puts[i] = Reg{ID: uint64(i), Kind: bus.KindPub, Object: long, Cmd: long}
	}
	if err := n1.Announce(puts, nil).Wait(waitTimeout); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("announcing %d long registrations: err = %v, want nats.ErrMaxPayload", n, err)
	}
	if n1.Len(bus.KindPub) != n {
		t.Fatalf("n1 holds %d registrations, want %d", n1.Len(bus.KindPub), n)
	}
	if !poll(waitTimeout, func() bool { return n2.Len(bus.KindPub) == n }) {
		t.Fatalf("n2 knows %d registrations, not the %d of n1", n2.Len(bus.KindPub), n)
	}
	// And the versions are in step again: the next change is confirmed.
	announce(t, n1, nil, list(0))
	if n2.Len(bus.KindPub) != n-1 {
		t.Fatalf("after the delete n2 holds %d registrations, want %d", n2.Len(bus.KindPub), n-1)
	}
}
