package bus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/testenv"
)

// Directory settings of the tests: fast heartbeats, short requests.
const (
	testHeartbeat = 50 * time.Millisecond
	testTimeout   = time.Second
	testExpiry    = DefaultExpiryBeats * testHeartbeat
	waitTimeout   = 5 * time.Second // bound of every wait for an event that must happen
)

var testSubjects = Subjects{Prefix: "t"}

// startServer runs a server for t and, after everything else t cleans up,
// checks that no goroutine of the package is left.
func startServer(t *testing.T) *testenv.Server {
	t.Helper()
	t.Cleanup(func() { checkNoLeaks(t) })
	return testenv.Run(t)
}

// fastReconnect makes a connection retry every 10 ms, forever.
func fastReconnect() []nats.Option {
	return []nats.Option{nats.ReconnectWait(10 * time.Millisecond), nats.ReconnectJitter(0, 0), nats.MaxReconnects(-1)}
}

// join joins node to the bus over nc with the test settings, changed by
// mod, and closes the directory when t ends.
func join(t *testing.T, nc *nats.Conn, node string, mod ...func(*Options)) *Directory {
	t.Helper()
	o := Options{Conn: nc, Subjects: testSubjects, Node: node, Heartbeat: testHeartbeat, Timeout: testTimeout}
	for _, m := range mod {
		m(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	d, err := Join(ctx, o)
	if err != nil {
		t.Fatalf("Join(%s): %v", node, err)
	}
	t.Cleanup(d.Close)
	return d
}

func withExpiry(e time.Duration) func(*Options) { return func(o *Options) { o.Expiry = e } }

func withHeartbeat(h time.Duration) func(*Options) { return func(o *Options) { o.Heartbeat = h } }

func withLogger(l *slog.Logger) func(*Options) { return func(o *Options) { o.Logger = l } }

func withTimeout(d time.Duration) func(*Options) { return func(o *Options) { o.Timeout = d } }

// reg is a registration of object "o", cmd "c" matching every id.
func reg(id uint64) Reg { return Reg{ID: id, Kind: KindPub, Object: "o", Cmd: "c"} }

// peers returns d's peers, sorted; nil for none.
func peers(d *Directory) []string {
	p := d.Peers()
	if len(p) == 0 {
		return nil
	}
	slices.Sort(p)
	return p
}

// ids returns the sorted IDs of node's registrations of kind k that d
// finds for ("o", "c", 1), full and slices; nil for none.
func ids(d *Directory, k Kind, node string) []uint64 {
	full, sl := d.Lookup(k, "o", "c", 1, nil, nil)
	var out []uint64
	for _, e := range append(full, sl...) {
		if e.Key.Node == node {
			out = append(out, e.Key.ID)
		}
	}
	slices.Sort(out)
	return out
}

func list(v ...uint64) []uint64 { return v }

// announce announces a change of d and waits until the peers applied it.
func announce(t *testing.T, d *Directory, puts []Reg, dels []uint64) {
	t.Helper()
	if err := d.Announce(puts, dels).Wait(waitTimeout); err != nil {
		t.Fatalf("%s: Announce(%v, %v).Wait: %v", d.Node(), puts, dels, err)
	}
}

// poll reports whether cond holds within timeout, checking every 2 ms.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		<-tick.C
	}
	return true
}

// eventually fails t if cond does not hold within timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("not within %v: "+what, append([]any{timeout}, args...)...)
	}
}

// checkNoLeaks fails t unless, within a few seconds, no goroutine runs
// code of the package's non-test files.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	var leaked []string
	if !poll(waitTimeout, func() bool { leaked = busGoroutines(); return len(leaked) == 0 }) {
		t.Errorf("%d goroutines of package bus still running:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
}

// busGoroutines returns the stacks of the goroutines with a frame of
// package bus outside its tests, or created by such a frame.
func busGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if hasBusFrame(g) {
			leaked = append(leaked, g)
		}
	}
	return leaked
}

// hasBusFrame reports whether a goroutine's stack has a function of package
// bus whose file (the next line) is not a _test.go file.
func hasBusFrame(stack string) bool {
	sc := bufio.NewScanner(strings.NewReader(stack))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	inBus := false
	for sc.Scan() {
		line := sc.Text()
		if file, ok := strings.CutPrefix(line, "\t"); ok {
			if inBus && !strings.Contains(file, "_test.go:") {
				return true
			}
			inBus = false
			continue
		}
		inBus = strings.Contains(line, "natsnotifier/notifier/bus.")
	}
	return false
}

// logRecorder is a slog.Handler counting messages.
type logRecorder struct {
	mu   sync.Mutex
	msgs map[string]int
}

func newLogRecorder() *logRecorder { return &logRecorder{msgs: make(map[string]int)} }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs[rec.Message]++
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[msg]
}

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
	p := d.Announce([]Reg{reg(1), {ID: 2, Kind: KindRPC, Object: "o", Cmd: "c", Slice: true, Weight: 2}}, nil)
	if err := p.Wait(time.Nanosecond); err != nil {
		t.Fatalf("Wait on an empty bus: %v", err)
	}
	if got := ids(d, KindPub, "n1"); !slices.Equal(got, list(1)) {
		t.Errorf("own pub registrations %v, want [1]", got)
	}
	if got := ids(d, KindRPC, "n1"); !slices.Equal(got, list(2)) {
		t.Errorf("own rpc registrations %v, want [2]", got)
	}
	if d.Len(KindPub) != 1 || d.Len(KindRPC) != 1 {
		t.Errorf("Len = %d, %d; want 1, 1", d.Len(KindPub), d.Len(KindRPC))
	}
	announce(t, d, nil, list(1, 2))
	if d.Len(KindPub) != 0 || d.Len(KindRPC) != 0 {
		t.Errorf("after deleting everything Len = %d, %d", d.Len(KindPub), d.Len(KindRPC))
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
	if got := ids(n2, KindPub, "n1"); !slices.Equal(got, list(1)) {
		t.Fatalf("right after joining, n2 knows n1's registrations %v, want [1]", got)
	}

	announce(t, n2, []Reg{reg(10), reg(11)}, nil)
	if got := ids(n1, KindPub, "n2"); !slices.Equal(got, list(10, 11)) {
		t.Fatalf("after Wait, n1 knows n2's registrations %v, want [10 11]", got)
	}
	// A put replacing an ID moves it to its new kind; a delete in the
	// same change applies after the puts.
	moved := Reg{ID: 1, Kind: KindRPC, Object: "o", Cmd: "c", Slice: true, Weight: 3}
	announce(t, n1, []Reg{moved, reg(2), reg(3)}, list(3))
	if got, rpc := ids(n2, KindPub, "n1"), ids(n2, KindRPC, "n1"); !slices.Equal(got, list(2)) || !slices.Equal(rpc, list(1)) {
		t.Fatalf("after Wait, n2 knows n1's pub %v and rpc %v, want [2] and [1]", got, rpc)
	}
	_, sl := n2.Lookup(KindRPC, "o", "c", 5, nil, nil)
	if len(sl) != 1 || sl[0].Weight != 3 || !sl[0].Slice {
		t.Fatalf("n2 finds the rpc slices %+v", sl)
	}
	announce(t, n2, nil, list(10, 999)) // 999 is unknown: ignored
	if got := ids(n1, KindPub, "n2"); !slices.Equal(got, list(11)) {
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
	if n3.Len(KindPub) != 2 || n3.Len(KindRPC) != 1 {
		t.Errorf("n3 knows %d pub and %d rpc registrations, want 2 and 1", n3.Len(KindPub), n3.Len(KindRPC))
	}
	announce(t, n3, []Reg{reg(20)}, nil)
	for _, d := range []*Directory{n1, n2} {
		if got := ids(d, KindPub, "n3"); !slices.Equal(got, list(20)) {
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
	script []rawTable // answers to the next table requests; the last repeats
	served int        // table requests answered
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
	r.mu.Unlock()
	data, err := msgpack.Marshal(&tablePart{Node: r.name, Ver: tab.ver, Parts: 1, Regs: tab.regs})
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil {
		r.t.Errorf("raw node: answer table request: %v", err)
	}
}

// answer sets the tables the next table requests get.
func (r *rawNode) answer(tabs ...rawTable) {
	r.mu.Lock()
	r.script = tabs
	r.mu.Unlock()
}

func (r *rawNode) servedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served
}

func (r *rawNode) announce(a announcement) {
	r.t.Helper()
	a.Node = r.name
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
		if got := ids(d, KindPub, "r1"); !slices.Equal(got, want) {
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
	if d.Len(KindPub) != 0 {
		t.Fatalf("n2 still holds %d registrations", d.Len(KindPub))
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
	long := strings.Repeat("x", MaxNameLen)
	n := int(nc1.MaxPayload())/(2*MaxNameLen) + 1
	puts := make([]Reg, n)
	for i := range puts {
		puts[i] = Reg{ID: uint64(i), Kind: KindPub, Object: long, Cmd: long}
	}
	if err := n1.Announce(puts, nil).Wait(waitTimeout); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("announcing %d long registrations: err = %v, want nats.ErrMaxPayload", n, err)
	}
	if n1.Len(KindPub) != n {
		t.Fatalf("n1 holds %d registrations, want %d", n1.Len(KindPub), n)
	}
	if !poll(waitTimeout, func() bool { return n2.Len(KindPub) == n }) {
		t.Fatalf("n2 knows %d registrations, not the %d of n1", n2.Len(KindPub), n)
	}
	// And the versions are in step again: the next change is confirmed.
	announce(t, n1, nil, list(0))
	if n2.Len(KindPub) != n-1 {
		t.Fatalf("after the delete n2 holds %d registrations, want %d", n2.Len(KindPub), n-1)
	}
}

// TestSilentPeerDropped: a node whose connection dies without a goodbye is
// dropped after the expiry, with its registrations, and changes waiting
// for its acknowledgement are released.
func TestSilentPeerDropped(t *testing.T) {
	s := startServer(t)
	const expiry = 10 * testHeartbeat // leaves time to announce before n1 can expire
	nc1 := testenv.Connect(t, s.URL())
	n1 := join(t, nc1, "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2", withExpiry(expiry))
	announce(t, n1, []Reg{reg(1)}, nil)

	nc1.Close()
	start := time.Now()
	p := n2.Announce([]Reg{reg(2)}, nil)
	if p.w == nil {
		t.Fatal("the change waits for nobody: n1 already dropped")
	}
	n2.mu.RLock()
	_, needs := p.w.need["n1"]
	n2.mu.RUnlock()
	if !needs {
		t.Fatal("the change does not wait for n1")
	}
	bound := expiry + 2*testHeartbeat + time.Second
	if err := p.Wait(bound); err != nil {
		t.Fatalf("Wait for a change n1 cannot confirm: %v (after %v)", err, time.Since(start))
	}
	took := time.Since(start)
	if got := peers(n2); got != nil {
		t.Fatalf("the change was released while n2 still knows %v", got)
	}
	if got := ids(n2, KindPub, "n1"); got != nil {
		t.Fatalf("n1 was dropped but its registrations %v remain", got)
	}
	if took < expiry-2*testHeartbeat {
		t.Errorf("n1 was dropped after %v, before the expiry %v", took, expiry)
	}
	t.Logf("silent node dropped after %v (expiry %v)", took, expiry)
}

// TestSilentPeerDroppedDefaultExpiry polls for the drop with the default
// expiry of DefaultExpiryBeats heartbeats.
func TestSilentPeerDroppedDefaultExpiry(t *testing.T) {
	s := startServer(t)
	nc1 := testenv.Connect(t, s.URL())
	n1 := join(t, nc1, "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	announce(t, n1, []Reg{reg(1)}, nil)
	nc1.Close()
	eventually(t, testExpiry+2*testHeartbeat+time.Second, func() bool { return peers(n2) == nil }, "n2 drops the silent n1")
	if got := ids(n2, KindPub, "n1"); got != nil {
		t.Fatalf("n1 was dropped but its registrations %v remain", got)
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
	if err := p.Wait(time.Nanosecond); err != nil {
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
	if got := ids(n1, KindPub, "n2"); got != nil {
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
	_ = n1.Announce([]Reg{reg(2)}, nil) // version 2
	d1, _ := r.next(anns, annDelta)
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
	if got := ids(n2, KindPub, "n1"); got != nil {
		t.Errorf("after n1's Close returned, n2 routes to n1's registrations %v", got)
	}
}

// TestDropComesBack: a dropped live node is learned again from its next
// heartbeat, registrations included.
func TestDropComesBack(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	announce(t, n1, []Reg{reg(1), reg(2)}, nil)
	n2.Drop("n1")
	if got := peers(n2); got != nil {
		t.Fatalf("after Drop n2 knows %v", got)
	}
	if got := ids(n2, KindPub, "n1"); got != nil {
		t.Fatalf("after Drop n2 keeps n1's registrations %v", got)
	}
	eventually(t, waitTimeout, func() bool {
		return slices.Equal(peers(n2), []string{"n1"}) && slices.Equal(ids(n2, KindPub, "n1"), list(1, 2))
	}, "n2 learns n1 again")
	announce(t, n1, []Reg{reg(3)}, nil)
	if got := ids(n2, KindPub, "n1"); !slices.Equal(got, list(1, 2, 3)) {
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
				slices.Equal(ids(n1, KindPub, "n1"), want1) && slices.Equal(ids(n2, KindPub, "n1"), want1) &&
				slices.Equal(ids(n1, KindPub, "n2"), want2) && slices.Equal(ids(n2, KindPub, "n2"), want2)
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
// peer changed its table learns the change when it reconnects, without
// waiting for that peer's next heartbeat. In a cluster, n2's server goes
// down while n1, on the other server, changes its registrations; the
// heartbeat is long so that only Reconnected can repair n2's copy.
func TestReconnectedFetchesChangedPeers(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	servers := testenv.RunCluster(t, 2)
	var p1, p2 atomic.Pointer[Directory]
	nc1 := reconnectingConn(t, servers[0].URL(), &p1, nil, nats.IgnoreDiscoveredServers())
	var reconnects atomic.Int32
	nc2 := reconnectingConn(t, servers[1].URL(), &p2, &reconnects, nats.IgnoreDiscoveredServers())
	const hb = time.Minute
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
	if !poll(3*time.Second, func() bool { return slices.Equal(ids(n2, KindPub, "n1"), list(1, 2)) }) {
		t.Fatalf("3 s after reconnecting (%d Reconnected calls), n2 knows n1's registrations %v, want [1 2]; "+
			"n1's next heartbeat is due %v after the previous one", reconnects.Load(), ids(n2, KindPub, "n1"), hb)
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
		if msgpack.Unmarshal(g, new(ack)) != nil {
			undecodableAcks++ // logged; the others have a bad node name
		}
	}
	for _, node := range []string{"", "a.b", "n1"} { // invalid names, or the node itself
		pub(testSubjects.NodeAck("n1"), "", mp(&ack{Node: node, Ver: 1 << 60}))
	}
	for _, g := range garbage {
		pub(testSubjects.NodeDir("n1"), "", g) // a table request without reply
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*logRecorder{log1, log2} {
		eventually(t, waitTimeout, func() bool {
			return l.count("notifier: undecodable announcement") == 2*len(garbage) &&
				l.count("notifier: undecodable ack") == undecodableAcks
		}, "the garbage is handled")
	}

	if got := peers(n1); !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("n1 knows %v", got)
	}
	if got := peers(n2); !slices.Equal(got, []string{"n1"}) {
		t.Fatalf("n2 knows %v", got)
	}
	announce(t, n1, []Reg{reg(1)}, nil)
	announce(t, n2, []Reg{reg(2)}, nil)
	if !slices.Equal(ids(n2, KindPub, "n1"), list(1)) || !slices.Equal(ids(n1, KindPub, "n2"), list(2)) {
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
		batch = append(batch, Reg{ID: uint64(i), Kind: KindPub, Object: fmt.Sprintf("%s%d", object, i), Cmd: cmd, Mask: -1, Value: int64(i)})
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
		if tp.Node != "n1" || tp.Part != part || tp.Parts != parts || tp.Ver != n/1000 {
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
	if got := n2.Len(KindPub); got != n {
		t.Fatalf("the joiner knows %d registrations, want %d", got, n)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		full, _ := n2.Lookup(KindPub, fmt.Sprintf("%s%d", object, i), cmd, int64(i), nil, nil)
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
