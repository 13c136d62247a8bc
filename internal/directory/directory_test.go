package directory

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

func TestJoinEmptyBus(t *testing.T) {
	s := startServer(t)
	nc := testenv.Connect(t, s.URL())
	start := time.Now()
	d := join(t, nc, "n1")
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Join on an empty bus took %v", took)
	}
	if p := peers(d); p != nil || d.Node() != "n1" {
		t.Fatalf("node %q has peers %v on an empty bus", d.Node(), p)
	}
	// Nobody has to confirm a change.
	p := d.Announce([]Reg{reg(1), {ID: 2, Kind: bus.KindRPC, Object: "o", Cmd: "c", Slice: true, Weight: 2}}, nil)
	if err := p.Wait(time.Nanosecond); err != nil {
		t.Fatalf("Wait on an empty bus: %v", err)
	}
	if got := ids(d, bus.KindPub, "n1"); !slices.Equal(got, list(1)) {
		t.Errorf("own pub registrations %v, want [1]", got)
	}
	if got := ids(d, bus.KindRPC, "n1"); !slices.Equal(got, list(2)) {
		t.Errorf("own rpc registrations %v, want [2]", got)
	}
	if d.Len(bus.KindPub) != 1 || d.Len(bus.KindRPC) != 1 {
		t.Errorf("Len = %d, %d; want 1, 1", d.Len(bus.KindPub), d.Len(bus.KindRPC))
	}
	announce(t, d, nil, list(1, 2))
	if d.Len(bus.KindPub) != 0 || d.Len(bus.KindRPC) != 0 {
		t.Errorf("after deleting everything Len = %d, %d", d.Len(bus.KindPub), d.Len(bus.KindRPC))
	}
}

// TestJoinAndAnnounce checks the guarantees that need no polling: Join
// returns once every member knows the joiner, and Wait returns once every
// peer applied the change.
func TestJoinAndAnnounce(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	announce(t, n1, []Reg{reg(1)}, nil)

	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	if got := peers(n1); !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("right after n2 joined, n1 knows %v", got)
	}
	if got := peers(n2); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("right after joining, n2 knows %v", got)
	}
	if got := ids(n2, bus.KindPub, "n1"); !slices.Equal(got, list(1)) {
		t.Fatalf("right after joining, n2 knows n1's registrations %v, want [1]", got)
	}

	announce(t, n2, []Reg{reg(10), reg(11)}, nil)
	if got := ids(n1, bus.KindPub, "n2"); !slices.Equal(got, list(10, 11)) {
		t.Fatalf("after Wait, n1 knows n2's registrations %v, want [10 11]", got)
	}
	// A put replacing an ID moves it to its new kind; a delete in the
	// same change applies after the puts.
	moved := Reg{ID: 1, Kind: bus.KindRPC, Object: "o", Cmd: "c", Slice: true, Weight: 3}
	announce(t, n1, []Reg{moved, reg(2), reg(3)}, list(3))
	if got, rpc := ids(n2, bus.KindPub, "n1"), ids(n2, bus.KindRPC, "n1"); !slices.Equal(got, list(2)) || !slices.Equal(rpc, list(1)) {
		t.Fatalf("after Wait, n2 knows n1's pub %v and rpc %v, want [2] and [1]", got, rpc)
	}
	_, sl := n2.Lookup(bus.KindRPC, "o", "c", 5, nil, nil)
	if len(sl) != 1 || sl[0].Weight != 3 || !sl[0].Slice {
		t.Fatalf("n2 finds the rpc slices %+v", sl)
	}
	announce(t, n2, nil, list(10, 999)) // 999 is unknown: ignored
	if got := ids(n1, bus.KindPub, "n2"); !slices.Equal(got, list(11)) {
		t.Fatalf("after the delete, n1 knows n2's registrations %v, want [11]", got)
	}

	// A third node: both members know it when Join returns, it knows all.
	n3 := join(t, testenv.Connect(t, s.URL()), "n3")
	for _, c := range []struct {
		d    *Directory
		want []string
	}{{n1, []string{"n2", "n3"}}, {n2, []string{"n1", "n3"}}, {n3, []string{"n1", "n2"}}} {
		if got := peers(c.d); !slices.Equal(got, c.want) {
			t.Errorf("right after n3 joined, %s knows %v, want %v", c.d.Node(), got, c.want)
		}
	}
	if n3.Len(bus.KindPub) != 2 || n3.Len(bus.KindRPC) != 1 {
		t.Errorf("n3 knows %d pub and %d rpc registrations, want 2 and 1", n3.Len(bus.KindPub), n3.Len(bus.KindRPC))
	}
	announce(t, n3, []Reg{reg(20)}, nil)
	for _, d := range []*Directory{n1, n2} {
		if got := ids(d, bus.KindPub, "n3"); !slices.Equal(got, list(20)) {
			t.Errorf("%s knows n3's registrations %v, want [20]", d.Node(), got)
		}
	}
}

// rawNode is a directory node written out in the test: it answers table
// requests from a script and announces whatever the test says, with a reply
// subject collecting the acknowledgements.
type rawNode struct {
	t     *testing.T
	nc    *nats.Conn
	name  string
	inbox string
	acks  *nats.Subscription

	mu     sync.Mutex
	script []rawTable    // answers to the next table requests; the last repeats
	served int           // table requests answered
	ver    uint64        // its current version, as its probe answers say: the highest announced or scripted
	frozen bool          // probes go unanswered
	late   time.Duration // probes are answered this late
	mute   bool          // table requests go unanswered
	probes int           // probes received
}

type rawTable struct {
	ver  uint64
	regs []Reg
}

func newRawNode(t *testing.T, url, name string) *rawNode {
	t.Helper()
	r := &rawNode{t: t, nc: testenv.Connect(t, url), name: name, script: []rawTable{{}}}
	r.inbox = r.nc.NewInbox()
	var err error
	if r.acks, err = r.nc.SubscribeSync(r.inbox); err != nil {
		t.Fatal(err)
	}
	if _, err := r.nc.Subscribe(testSubjects.NodeDir(name), r.serve); err != nil {
		t.Fatal(err)
	}
	if _, err := r.nc.Subscribe(testSubjects.NodeProbe(name), r.probed); err != nil {
		t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rawNode) serve(m *nats.Msg) {
	r.mu.Lock()
	tab := r.script[0]
	if len(r.script) > 1 {
		r.script = r.script[1:]
	}
	r.served++
	mute := r.mute
	r.mu.Unlock()
	if mute {
		return
	}
	data, err := msgpack.Marshal(&tablePart{Node: r.name, Ver: tab.ver, Parts: 1, Regs: tab.regs})
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil {
		r.t.Errorf("raw node: answer table request: %v", err)
	}
}

// probed answers a ring probe with the raw node's version and no digest.
func (r *rawNode) probed(m *nats.Msg) {
	r.mu.Lock()
	ver, frozen, late := r.ver, r.frozen, r.late
	r.probes++
	r.mu.Unlock()
	if frozen {
		return
	}
	data, err := msgpack.Marshal(&probeReply{Node: r.name, Ver: ver, Knows: true})
	if err != nil {
		r.t.Errorf("raw node: encode probe answer: %v", err)
		return
	}
	if late > 0 {
		time.AfterFunc(late, func() { _ = m.Respond(data) }) // the connection may be closed by then
		return
	}
	if err := m.Respond(data); err != nil {
		r.t.Errorf("raw node: answer probe: %v", err)
	}
}

// set changes the raw node's behaviour under its lock.
func (r *rawNode) set(f func(r *rawNode)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
}

// freeze makes the raw node stop answering probes, as a stopped process.
func (r *rawNode) freeze() {
	r.mu.Lock()
	r.frozen = true
	r.mu.Unlock()
}

// answer sets the tables the next table requests get.
func (r *rawNode) answer(tabs ...rawTable) {
	r.mu.Lock()
	r.script = tabs
	for _, tab := range tabs {
		r.ver = max(r.ver, tab.ver)
	}
	r.mu.Unlock()
}

func (r *rawNode) probeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.probes
}

func (r *rawNode) servedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served
}

func (r *rawNode) announce(a announcement) {
	r.t.Helper()
	a.Node = r.name
	if a.Type != annBye {
		r.mu.Lock()
		r.ver = max(r.ver, a.Ver)
		r.mu.Unlock()
	}
	data, err := msgpack.Marshal(&a)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.PublishMsg(&nats.Msg{Subject: testSubjects.Ann(r.name), Reply: r.inbox, Data: data}); err != nil {
		r.t.Fatal(err)
	}
}

// expectAcks waits for an acknowledgement of version ver from each of nodes,
// in any order.
func (r *rawNode) expectAcks(ver uint64, nodes ...string) {
	r.t.Helper()
	missing := slices.Clone(nodes)
	for len(missing) > 0 {
		m, err := r.acks.NextMsg(waitTimeout)
		if err != nil {
			r.t.Fatalf("no ack of version %d from %v: %v", ver, missing, err)
		}
		var a ack
		if err := msgpack.Unmarshal(m.Data, &a); err != nil {
			r.t.Fatalf("undecodable ack: %v", err)
		}
		i := slices.Index(missing, a.Node)
		if i < 0 || a.Ver != ver {
			r.t.Fatalf("got ack %+v, want version %d from %v", a, ver, missing)
		}
		missing = slices.Delete(missing, i, i+1)
	}
}

// watch subscribes to the announcements of node.
func (r *rawNode) watch(node string) *nats.Subscription {
	r.t.Helper()
	sub, err := r.nc.SubscribeSync(testSubjects.Ann(node))
	if err == nil {
		err = r.nc.Flush()
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return sub
}

// next returns the next announcement of type typ on sub, skipping
// heartbeats.
func (r *rawNode) next(sub *nats.Subscription, typ uint8) (*nats.Msg, announcement) {
	r.t.Helper()
	for {
		m, err := sub.NextMsg(waitTimeout)
		if err != nil {
			r.t.Fatalf("no announcement of type %d: %v", typ, err)
		}
		var a announcement
		if err := msgpack.Unmarshal(m.Data, &a); err != nil {
			r.t.Fatal(err)
		}
		if a.Type == typ {
			return m, a
		}
		if a.Type != annHeartbeat {
			r.t.Fatalf("got announcement %+v, want type %d", a, typ)
		}
	}
}

// ack acknowledges version ver to the announcer through reply.
func (r *rawNode) ack(reply string, ver uint64) {
	r.t.Helper()
	data, err := msgpack.Marshal(&ack{Node: r.name, Ver: ver})
	if err == nil {
		err = r.nc.Publish(reply, data)
	}
	if err != nil {
		r.t.Fatal(err)
	}
}
