package notifier_test

import (
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// Misbehaving destinations and undecodable traffic never stop the others.

func TestPanickingSubscriber(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL())
	b := connect(t, s.URL())
	c := connect(t, s.URL())
	const object, cmd, n = "panic", "c", 20
	p, ps := &panicker{}, &panicker{}
	good, goodC := &recorder{}, &recorder{}
	if err := b.Subscribe(object, notifier.Match{}, cmd, p); err != nil {
		t.Fatal(err)
	}
	if err := b.Slice(object, notifier.Match{}, cmd, ps, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(object, notifier.Match{}, cmd, good); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(object, notifier.Match{}, cmd, goodC); err != nil {
		t.Fatal(err)
	}
	for id := range int64(n) {
		if err := pub.Publish(object, id, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
	good.waitLen(t, n, deliveryTimeout)
	goodC.waitLen(t, n, deliveryTimeout)
	eventually(t, deliveryTimeout, func() bool { return p.calls.Load() == n && ps.calls.Load() == n },
		"every notification reaches the panicking Subscribers (got %d full, %d slice)", lazyInt{&p.calls}, lazyInt{&ps.calls})
	eventually(t, deliveryTimeout, func() bool { return b.Stats().Panics == 2*n }, "Stats().Panics == %d", 2*n)

	// The Notifier keeps working: registering, publishing, delivering.
	r := &recorder{}
	if err := b.Subscribe(object+"2", notifier.Match{}, cmd, r); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(object+"2", 1, cmd, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(object+"2", 2, cmd, nil); err != nil {
		t.Fatal(err)
	}
	r.waitLen(t, 2, deliveryTimeout)
}

// lazyInt prints an atomic counter when formatted.
type lazyInt struct{ v *atomic.Int64 }

func (l lazyInt) String() string { return strconv.FormatInt(l.v.Load(), 10) }

// blocker blocks in Notify until release is closed.
type blocker struct {
	release chan struct{}
	calls   atomic.Int64
}

func (b *blocker) Notify(string, int64, string, notifier.Args) {
	b.calls.Add(1)
	<-b.release
}

func TestBlockedSubscriber(t *testing.T) {
	s := testenv.Run(t)
	pub := connect(t, s.URL())
	const queue = 10
	b := connect(t, s.URL(), notifier.WithQueueSize(queue))
	blk := &blocker{release: make(chan struct{})}
	t.Cleanup(func() { close(blk.release) }) // runs before b.Close
	const cmd, n, batch, size = "c", 1000, queue / 2, 10 << 10
	good := &recorder{}
	// Same Notifier, same object: the blocked destination and a good one.
	// The blocked one also gets 10 KiB on another object, to weigh its queue.
	if err := b.Subscribe("blocked", notifier.Match{}, cmd, blk); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe("blocked", notifier.Match{}, cmd, good); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe("heavy", notifier.Match{}, cmd, blk); err != nil {
		t.Fatal(err)
	}
	heavy := make([]byte, size)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	// good's queue holds 10 too: publish in batches it can take, waiting for
	// each, while blk's queues overflow.
	for id := int64(0); id < n; id += batch {
		for k := id; k < id+batch; k++ {
			if err := pub.Publish("heavy", k, cmd, heavy); err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish("blocked", k, cmd, nil); err != nil {
				t.Fatal(err)
			}
		}
		good.waitLen(t, int(id+batch), deliveryTimeout)
	}
	pubFlush(t, pub, b)
	grown := int64(heap()) - int64(before)
	if got := good.IDs(); !slices.Equal(got, seq(n)) {
		t.Errorf("the other Subscriber got %s, want all %d in order", fmtIDs(got), n)
	}
	if got := blk.calls.Load(); got != 2 {
		t.Errorf("the blocked Subscriber was called %d times, want 2 (once per registration; it never returns)", got)
	}
	// Per registration, one notification is being handled, the queue holds
	// 10, the rest drop.
	if got, want := b.Stats().Dropped, uint64(2*(n-1-queue)); got < want {
		t.Errorf("Stats().Dropped = %d, want at least %d: the queue is not bounded", got, want)
	}
	// Unbounded, the heavy payloads alone would hold n*size = 10 MB.
	t.Logf("heap grew by %d KiB", grown>>10)
	if grown > n*size/4 {
		t.Errorf("heap grew by %d KiB while a Subscriber was blocked: memory is not bounded", grown>>10)
	}
}

func TestUndecodableMessages(t *testing.T) {
	s := testenv.Run(t)
	a := connect(t, s.URL())
	b := connect(t, s.URL())
	const object, cmd = "garbage", "c"
	r := &recorder{}
	if err := b.Subscribe(object, notifier.Match{}, cmd, r); err != nil {
		t.Fatal(err)
	}
	nc := testenv.Connect(t, s.URL())
	node := "notifier.node." + b.Node() + ".pub."
	raw := []struct {
		subject string
		header  nats.Header
		data    []byte
	}{
		// Routed to b's node directly, malformed.
		{node + object + "." + cmd + ".1", nil, nil},                          // no frame
		{node + object + "." + cmd + ".1", nil, []byte{0x02, 0xff, 0xff}},     // truncated slice id
		{node + object + "." + cmd + ".x", nil, []byte{0x01, 0xc0}},           // id not a number
		{node + object + "." + cmd, nil, []byte{0x01, 0xc0}},                  // no id
		{node + object + "." + cmd + ".99999999999999999999", nil, []byte{1}}, // id overflows int64
		// Gateway subjects, bad bodies.
		{"notifier.pub." + object + "." + cmd + ".1", nil, []byte("{not json")},
		{"notifier.pub." + object + "." + cmd + ".1", nats.Header{"Content-Type": {"application/json"}}, []byte("[1,")},
		{"notifier.pub." + object + "." + cmd + ".1", nats.Header{"Content-Type": {"application/msgpack"}}, []byte{0xc1}},
		{"notifier.pub." + object + "." + cmd + ".1", nats.Header{"Content-Type": {"text/plain"}}, []byte("hi")},
		{"notifier.pub." + object + "." + cmd + ".x", nil, []byte("1")},
	}
	for _, m := range raw {
		if err := nc.PublishMsg(&nats.Msg{Subject: m.subject, Header: m.header, Data: m.data}); err != nil {
			t.Fatal(err)
		}
	}
	// Good traffic after the garbage still flows.
	if err := nc.Publish("notifier.pub."+object+"."+cmd+".3", []byte(`"ok"`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("notifier.pub."+object+"."+cmd+".5", nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(object, 4, cmd, "lib"); err != nil {
		t.Fatal(err)
	}
	undecodable := func() uint64 { return a.Stats().Undecodable + b.Stats().Undecodable }
	want := uint64(len(raw))
	eventually(t, deliveryTimeout, func() bool { return undecodable() >= want }, "Stats().Undecodable reaches %d", want)
	r.waitLen(t, 3, deliveryTimeout)
	pubFlush(t, a, b)
	if got := undecodable(); got != want {
		t.Errorf("Stats().Undecodable = %d, want %d", got, want)
	}
	if got := sorted(r.IDs()); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Fatalf("got ids %v, want [3 4 5]", got)
	}
	for _, no := range r.Notes() {
		var v any
		if err := no.Args.Decode(&v); err != nil {
			t.Errorf("id %d: decode: %v", no.ID, err)
		}
		want := map[int64]any{3: "ok", 4: "lib", 5: nil}[no.ID]
		if v != want {
			t.Errorf("id %d: args %v, want %v", no.ID, v, want)
		}
	}
}
