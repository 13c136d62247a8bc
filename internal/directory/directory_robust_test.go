package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/wire"
	"github.com/natsnotifier/notifier/testenv"
)

func TestReconnected(t *testing.T) {
	s := startServer(t)
	var p1, p2 atomic.Pointer[Directory]
	var calls1, calls2 atomic.Int32
	nc1 := reconnectingConn(t, s.URL(), &p1, &calls1)
	nc2 := reconnectingConn(t, s.URL(), &p2, &calls2)
	n1 := join(t, nc1, "n1")
	p1.Store(n1)
	n2 := join(t, nc2, "n2")
	p2.Store(n2)
	announce(t, n1, []Reg{reg(1)}, nil)
	announce(t, n2, []Reg{reg(2)}, nil)
	consistent := func(want1, want2 []uint64) func() bool {
		return func() bool {
			return slices.Equal(peers(n1), []string{"n2"}) && slices.Equal(peers(n2), []string{"n1"}) &&
				slices.Equal(ids(n1, bus.KindPub, "n1"), want1) && slices.Equal(ids(n2, bus.KindPub, "n1"), want1) &&
				slices.Equal(ids(n1, bus.KindPub, "n2"), want2) && slices.Equal(ids(n2, bus.KindPub, "n2"), want2)
		}
	}

	s.Restart(t)
	eventually(t, waitTimeout, func() bool { return calls1.Load() == 1 && calls2.Load() == 1 }, "Reconnected called")
	waitConnected(t, nc1, nc2)
	eventually(t, waitTimeout, consistent(list(1), list(2)), "both nodes know each other after the restart")
	announce(t, n1, []Reg{reg(3)}, nil)
	announce(t, n2, []Reg{reg(4)}, nil)
	if !consistent(list(1, 3), list(2, 4))() {
		t.Fatal("changes after the restart not confirmed")
	}

	// Changes during an outage, and a peer forgotten meanwhile.
	s.Shutdown()
	eventually(t, waitTimeout, func() bool { return !nc1.IsConnected() && !nc2.IsConnected() }, "both disconnected")
	_ = n1.Announce([]Reg{reg(5)}, nil) // buffered by the client; nobody can confirm it now
	_ = n2.Announce(nil, list(2))
	n2.Drop("n1")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() bool { return calls1.Load() == 2 && calls2.Load() == 2 }, "Reconnected called")
	waitConnected(t, nc1, nc2)
	eventually(t, waitTimeout, consistent(list(1, 3, 5), list(4)), "both nodes know each other's changes after the outage")
	announce(t, n1, nil, list(1))
	announce(t, n2, []Reg{reg(6)}, nil)
	if !consistent(list(3, 5), list(4, 6))() {
		t.Fatal("changes after the outage not confirmed")
	}
}

// TestReconnectedFetchesChangedPeers: a node that was cut off while a known
// peer changed its table learns the change after it reconnects: the ring
// probes find the version it missed (no table fetch at the reconnect, so a
// server restart starts no storm of fetches). In a cluster, n2's server
// goes down while n1, on the other server, changes its registrations.
func TestReconnectedFetchesChangedPeers(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	servers := testenv.RunCluster(t, 2)
	var p1, p2 atomic.Pointer[Directory]
	nc1 := reconnectingConn(t, servers[0].URL(), &p1, nil, nats.IgnoreDiscoveredServers())
	var reconnects atomic.Int32
	nc2 := reconnectingConn(t, servers[1].URL(), &p2, &reconnects, nats.IgnoreDiscoveredServers())
	const hb = testHeartbeat
	n1 := join(t, nc1, "n1", withHeartbeat(hb))
	p1.Store(n1)
	// The members' interest crosses the route asynchronously.
	eventually(t, waitTimeout, func() bool {
		_, err := nc2.Request(testSubjects.Members(), nil, time.Second)
		return err == nil
	}, "n1's member subscription reaches the other server")
	n2 := join(t, nc2, "n2", withHeartbeat(hb))
	p2.Store(n2)
	if got := peers(n2); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("n2 knows %v", got)
	}
	announce(t, n1, []Reg{reg(1)}, nil)

	servers[1].Shutdown()
	eventually(t, waitTimeout, func() bool { return !nc2.IsConnected() }, "n2 disconnected")
	_ = n1.Announce([]Reg{reg(2)}, nil) // n2 cannot hear it
	if err := servers[1].Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() bool { return reconnects.Load() == 1 }, "Reconnected called")
	waitConnected(t, nc2)
	if !poll(3*time.Second, func() bool { return slices.Equal(ids(n2, bus.KindPub, "n1"), list(1, 2)) }) {
		t.Fatalf("3 s after reconnecting (%d Reconnected calls), n2 knows n1's registrations %v, want [1 2]; "+
			"probes every %v", reconnects.Load(), ids(n2, bus.KindPub, "n1"), hb)
	}
}

// TestUndecodableIgnored: garbage on the directory subjects is logged and
// dropped; the directory keeps working.
func TestUndecodableIgnored(t *testing.T) {
	s := startServer(t)
	log1, log2 := newLogRecorder(), newLogRecorder()
	n1 := join(t, testenv.Connect(t, s.URL()), "n1", withLogger(slog.New(log1)))
	n2 := join(t, testenv.Connect(t, s.URL()), "n2", withLogger(slog.New(log2)))
	raw := testenv.Connect(t, s.URL())
	mp := func(v any) []byte {
		data, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	garbage := [][]byte{
		nil,
		{0xc1}, // a byte msgpack never uses
		[]byte("not msgpack"),
		mp("a string"),
		mp(map[string]int{"Type": 1}),
		{0xdd, 0xff, 0xff, 0xff, 0xff}, // an array of 4G elements, cut short
		mp(&announcement{Type: annDelta, Node: "", Ver: 1}),
		mp(&announcement{Type: annDelta, Node: "a.b", Ver: 1}),
		mp(&announcement{Type: annHeartbeat, Node: "a b", Ver: 1}),
		mp(&announcement{Type: annBye, Node: "*"}),
	}
	pub := func(subj, reply string, data []byte) {
		t.Helper()
		if err := raw.PublishMsg(&nats.Msg{Subject: subj, Reply: reply, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range garbage {
		pub(testSubjects.Ann("x"), "", g)
		pub(testSubjects.Ann("n1"), testSubjects.NodeAck("n1"), g)
	}
	undecodableAcks := 0
	for _, g := range garbage {
		pub(testSubjects.NodeAck("n1"), "", g)
		pub(testSubjects.NodeAck("n2"), "", g)
		var a ack
		if wire.Unmarshal(g, &a) != nil || !bus.ValidName(a.Node) {
			undecodableAcks++
		}
	}
	for _, node := range []string{"", "a.b", "n1"} { // invalid names (counted), or the node itself
		pub(testSubjects.NodeAck("n1"), "", mp(&ack{Node: node, Ver: 1 << 60}))
	}
	for _, g := range garbage {
		pub(testSubjects.NodeDir("n1"), "", g) // a table request without reply
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		d    *Directory
		l    *logRecorder
		want uint64
	}{{n1, log1, uint64(2*len(garbage) + undecodableAcks + 2)}, {n2, log2, uint64(2*len(garbage) + undecodableAcks)}} {
		eventually(t, waitTimeout, func() bool {
			return c.d.Stats().Undecodable == c.want && c.l.count("notifier: undecodable directory message") == int(c.want)
		}, "the garbage is counted and logged by n%d", i+1)
	}

	if got := peers(n1); !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("n1 knows %v", got)
	}
	if got := peers(n2); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("n2 knows %v", got)
	}
	announce(t, n1, []Reg{reg(1)}, nil)
	announce(t, n2, []Reg{reg(2)}, nil)
	if !slices.Equal(ids(n2, bus.KindPub, "n1"), list(1)) || !slices.Equal(ids(n1, bus.KindPub, "n2"), list(2)) {
		t.Fatal("changes after the garbage not applied")
	}

	// Requests with any payload get proper answers.
	m, err := raw.Request(testSubjects.NodeDir("n1"), []byte("garbage"), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var tp tablePart
	if err := msgpack.Unmarshal(m.Data, &tp); err != nil || tp.Node != "n1" || tp.Parts != 1 || len(tp.Regs) != 1 || tp.Regs[0] != reg(1) {
		t.Fatalf("table of n1: %+v, %v", tp, err)
	}
	m, err = raw.Request(testSubjects.Members(), []byte{0xc1}, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var ml memberList
	if err := msgpack.Unmarshal(m.Data, &ml); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ml.Nodes)
	if !slices.Equal(ml.Nodes, []string{"n1", "n2"}) {
		t.Fatalf("member list %v", ml.Nodes)
	}

	// An ack from a node nobody knows makes n1 look for it; it does not
	// answer, so n1 forgets it again.
	pub(testSubjects.NodeAck("n1"), "", mp(&ack{Node: "ghost", Ver: 1}))
	if !poll(waitTimeout, func() bool { return slices.Equal(peers(n1), []string{"n2"}) }) {
		t.Fatalf("n1 knows %v, want [n2]", peers(n1))
	}
	announce(t, n1, []Reg{reg(3)}, nil)
}

// TestTableInParts: a table larger than half the max payload is streamed in
// parts, and a joiner gets all of it.
func TestTableInParts(t *testing.T) {
	s := startServer(t)
	nc1 := testenv.Connect(t, s.URL())
	n1 := join(t, nc1, "n1")
	const n = 20_000
	object := strings.Repeat("o", 100)
	cmd := strings.Repeat("c", 120)
	if est := n * (len(object) + 6 + len(cmd) + 48); int64(est) < 4*nc1.MaxPayload() {
		t.Fatalf("the table (about %d bytes) is too small for the test", est)
	}
	var batch []Reg
	for i := range n {
		batch = append(batch, Reg{ID: uint64(i), Kind: bus.KindPub, Object: fmt.Sprintf("%s%d", object, i), Cmd: cmd, Mask: -1, Value: int64(i)})
		if len(batch) == 1000 || i == n-1 {
			announce(t, n1, batch, nil)
			batch = nil
		}
	}

	// Fetched by hand: numbered parts, each under the max payload.
	raw := testenv.Connect(t, s.URL())
	inbox := raw.NewInbox()
	sub, err := raw.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.PublishRequest(testSubjects.NodeDir("n1"), inbox, nil); err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint64]bool)
	parts := 1
	for part := 0; part < parts; part++ {
		m, err := sub.NextMsg(waitTimeout)
		if err != nil {
			t.Fatalf("part %d: %v", part, err)
		}
		if int64(len(m.Data)) > nc1.MaxPayload() {
			t.Fatalf("part %d has %d bytes", part, len(m.Data))
		}
		var tp tablePart
		if err := msgpack.Unmarshal(m.Data, &tp); err != nil {
			t.Fatal(err)
		}
		if part == 0 {
			parts = tp.Parts
		}
		if tp.Node != "n1" || tp.Part != part || tp.Parts != parts || tp.Ver < 1 || tp.Ver > n/1000 { // changes share announcements
			t.Fatalf("part %d: {Node:%s Ver:%d Part:%d Parts:%d}", part, tp.Node, tp.Ver, tp.Part, tp.Parts)
		}
		for _, r := range tp.Regs {
			seen[r.ID] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("the parts hold %d registrations, want %d", len(seen), n)
	}
	if parts < 2 {
		t.Fatalf("the table came in %d part", parts)
	}
	t.Logf("table of %d registrations streamed in %d parts", n, parts)

	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	if got := n2.Len(bus.KindPub); got != n {
		t.Fatalf("the joiner knows %d registrations, want %d", got, n)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		full, _ := n2.Lookup(bus.KindPub, fmt.Sprintf("%s%d", object, i), cmd, int64(i), nil, nil)
		if len(full) != 1 || full[0].Key != (RegRef{Node: "n1", ID: uint64(i)}) {
			t.Fatalf("the joiner finds %+v for registration %d", full, i)
		}
	}
}

// TestJoinCanceled: a Join that cannot finish returns the context's error
// and leaves nothing running.
func TestJoinCanceled(t *testing.T) {
	s := startServer(t)
	nc := testenv.Connect(t, s.URL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cancel()
	d, err := Join(ctx, Options{Conn: nc, Subjects: testSubjects, Node: "n1", Heartbeat: testHeartbeat, Timeout: testTimeout})
	if !errors.Is(err, context.Canceled) || d != nil {
		t.Fatalf("Join with a canceled context = %v, %v; want context.Canceled", d, err)
	}
}

// TestJoinContextWithoutDeadline: ctx only bounds the sync; a context
// without deadline (context.Background()) means no bound, as everywhere in Go.
func TestJoinContextWithoutDeadline(t *testing.T) {
	s := startServer(t)
	nc := testenv.Connect(t, s.URL())
	d, err := Join(context.Background(), Options{Conn: nc, Subjects: testSubjects, Node: "n1", Heartbeat: testHeartbeat, Timeout: testTimeout})
	if err != nil {
		t.Fatalf("Join(context.Background()): %v", err)
	}
	d.Close()
}
