package notifier_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// hostDialer dials a Notifier's NATS connections and plays its host's
// failures: kill closes the connection as a crashed process's kernel
// would, freeze stops all reading and writing with the TCP connection left
// open (a stopped process). Either way no later dial succeeds, so the
// Notifier cannot come back by reconnecting.
type hostDialer struct {
	mu     sync.Mutex
	dead   bool
	conns  []net.Conn
	frozen atomic.Bool
	thawed chan struct{} // closed by thaw: frozen calls fail then
	once   sync.Once
}

func newHostDialer() *hostDialer { return &hostDialer{thawed: make(chan struct{})} }

var errHostDown = errors.New("test: host is down")

func (d *hostDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errHostDown
	}
	c, err := net.DialTimeout(network, address, 2*time.Second)
	if err != nil {
		return nil, err
	}
	c = &hostConn{Conn: c, d: d}
	d.conns = append(d.conns, c)
	return c, nil
}

// kill closes the connections without a word to the server or the client.
func (d *hostDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		_ = c.(*hostConn).Conn.Close()
	}
}

// freeze makes every read and write block until thaw.
func (d *hostDialer) freeze() {
	d.mu.Lock()
	d.dead = true
	d.mu.Unlock()
	d.frozen.Store(true)
}

// thaw ends a freeze: the blocked calls fail, the connections close. It
// leaves a connection that was not frozen alone.
func (d *hostDialer) thaw() {
	d.once.Do(func() { close(d.thawed) })
	if d.frozen.Load() {
		d.kill()
	}
}

// hostConn is a connection of a hostDialer.
type hostConn struct {
	net.Conn
	d *hostDialer
}

func (c *hostConn) blocked() bool {
	if !c.d.frozen.Load() {
		return false
	}
	<-c.d.thawed
	return true
}

func (c *hostConn) Read(b []byte) (int, error) {
	if c.blocked() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	if c.blocked() { // frozen while this read waited: the bytes are never seen
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *hostConn) Write(b []byte) (int, error) {
	if c.blocked() {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

// logCounts is a slog.Handler counting the messages of every Notifier of
// a test at Info and above, for the failure reports.
type logCounts struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (l *logCounts) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l *logCounts) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *logCounts) WithGroup(string) slog.Handler                 { return l }

func (l *logCounts) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs[r.Message]++
	l.mu.Unlock()
	return nil
}

func (l *logCounts) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.msgs)
}

// TestClusterNotifiers: 100 Notifiers (30 with -short) with the default heartbeat, spread
// over a 3-server cluster (each on its own server only). Join: once every
// Connect returned, each Notifier knows the 99 others. Routing: publishes
// from a Notifier on the first server reach registrations on the other
// two, a publish to a pattern everyone registered reaches all 100 once, and
// an RPC crosses servers. Idle traffic: the messages into the servers,
// summed, stay within 10 per Notifier and heartbeat. Crash detection: a
// Notifier whose connection closes without a goodbye, and one that freezes
// with its TCP connection open, are dropped by every other within 3 s.
func TestClusterNotifiers(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	const detect = 3 * time.Second // crash detection bound at the default heartbeat
	// The joins are sequential, 50 to 250 ms each under -race with 100
	// peers: -short (CI's share) runs 30 Notifiers, ./test.sh the 100.
	n := 100
	if testing.Short() {
		n = 30
	}
	servers := testenv.RunCluster(t, 3)
	nots := make([]*notifier.Notifier, n)
	hosts := make([]*hostDialer, n)
	pings := make([]*recorder, n) // ("node", i, "ping") of Notifier i
	alls := make([]*recorder, n)  // ("all", any id, "hello") of every Notifier
	logs := &logCounts{msgs: make(map[string]int)}
	defer func() {
		if t.Failed() {
			t.Logf("log messages of all Notifiers: %v", logs)
		}
	}()
	start := time.Now()
	for i := range n {
		hosts[i] = newHostDialer()
		nots[i] = connect(t, servers[i%3].URL(), notifier.WithLogger(slog.New(logs)),
			notifier.WithCloseTimeout(time.Second), // bounds the Close of the two gone ones
			// Joins and registrations wait for 99 peers under -race on a
			// shared machine: room for a slow round (measured 50 to 170
			// ms a Notifier); the detection bound below is unchanged.
			notifier.WithSyncTimeout(5*time.Second), notifier.WithRegisterTimeout(20*time.Second),
			notifier.WithNATSOptions(nats.IgnoreDiscoveredServers(), nats.SetCustomDialer(hosts[i])))
		t.Cleanup(hosts[i].thaw) // before the Notifier's Close: a frozen one could not close
		if got, want := nots[i].Conn().ConnectedUrl(), servers[i%3].URL(); got != want {
			t.Fatalf("Notifier %d connected to %s, want %s", i, got, want)
		}
		pings[i], alls[i] = &recorder{}, &recorder{}
		if err := nots[i].Batch().
			Subscribe("node", notifier.Exact(int64(i)), "ping", pings[i]).
			Subscribe("all", notifier.Match{}, "hello", alls[i]).
			Commit(); err != nil {
			t.Fatalf("Notifier %d registrations: %v", i, err)
		}
	}
	resp := 3*((n-1)/3) - 1 // a Notifier of server 2
	echo := notifier.NewResponderFunc(func(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
		var s string
		err := args.Decode(&s)
		return fmt.Sprintf("%s from %d", s, resp), err
	})
	if err := nots[resp].RPCRegister("svc", notifier.Exact(7), "echo", echo); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Notifiers joined and registered on 3 servers in %v; log messages: %v", n, time.Since(start), logs)

	// Join: no waiting, Connect and the registrations returned.
	for i, nt := range nots {
		if got := nt.Stats().Peers; got != n-1 {
			t.Fatalf("Notifier %d knows %d peers, want %d", i, got, n-1)
		}
	}

	// Routing, from server 0 to the others.
	for i := range n {
		if i%3 == 0 {
			continue
		}
		if err := nots[0].Publish("node", int64(i), "ping", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := nots[0].Publish("all", 5, "hello", "hi"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		want := 1
		if i%3 == 0 {
			want = 0
		}
		if want == 1 {
			pings[i].waitLen(t, 1, 5*time.Second)
		}
		alls[i].waitLen(t, 1, 5*time.Second)
		if got := pings[i].Len(); got != want || (want == 1 && !pings[i].Has(int64(i))) {
			t.Errorf("Notifier %d (server %d) got pings %v, want %d for its own id", i, i%3, fmtIDs(pings[i].IDs()), want)
		}
		if got := alls[i].Len(); got != 1 {
			t.Errorf("Notifier %d got %d copies of the publish to all", i, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	res, err := nots[0].RPC(ctx, "svc", 7, "echo", "ping")
	cancel()
	if err != nil || len(res) != 1 {
		t.Fatalf("RPC across servers: %v, %d results", err, len(res))
	}
	var got string
	if err := res[0].Decode(&got); err != nil || got != fmt.Sprintf("ping from %d", resp) {
		t.Fatalf("RPC across servers answered %q, %v", got, err)
	}

	// Idle traffic, from the servers' own counters.
	counts := func() (in, out int64) {
		for _, s := range servers {
			v, err := s.Server().Varz(nil)
			if err != nil {
				t.Fatal(err)
			}
			in, out = in+v.InMsgs, out+v.OutMsgs
		}
		return in, out
	}
	in0, out0 := counts()
	t0 := time.Now()
	<-time.After(2 * notifier.DefaultHeartbeat) // the measurement window, not a synchronisation
	in1, out1 := counts()
	beats := time.Since(t0).Seconds() / notifier.DefaultHeartbeat.Seconds()
	perBeat := float64(in1-in0) / beats
	t.Logf("idle: %.0f msgs in, %.0f out a heartbeat over the 3 servers (%.1f in a Notifier)", perBeat, float64(out1-out0)/beats, perBeat/float64(n))
	if limit := 10.0 * float64(n); perBeat > limit {
		t.Errorf("idle: %.0f messages into the servers a heartbeat, want at most %.0f", perBeat, limit)
	}
	for i, nt := range nots {
		if st := nt.Stats(); st.Undecodable != 0 || st.Forged != 0 || st.Peers != n-1 {
			t.Fatalf("Notifier %d while idle: %+v", i, st)
		}
	}

	// dropped waits until every Notifier but the gone ones knows want peers.
	dropped := func(what string, want int, gone ...int) {
		t.Helper()
		begin := time.Now()
		deadline := begin.Add(detect)
		var slowest time.Duration
		for i, nt := range nots {
			if slices.Contains(gone, i) {
				continue
			}
			if !poll(time.Until(deadline), func() bool { return nt.Stats().Peers == want }) {
				t.Fatalf("%s: Notifier %d (server %d) still knows %d peers %v after, want %d", what, i, i%3, nt.Stats().Peers, detect, want)
			}
			slowest = max(slowest, time.Since(begin))
		}
		t.Logf("%s: dropped by all the others within %v", what, slowest)
	}
	// Crash: Notifier 1 (server 1) loses its connection, no goodbye.
	hosts[1].kill()
	dropped("closed connection", n-2, 1)
	// Freeze: Notifier 2 (server 2) stops reading and writing.
	hosts[2].freeze()
	dropped("frozen", n-3, 1, 2)
	for i, nt := range nots {
		if i == 1 || i == 2 {
			continue
		}
		if st := nt.Stats(); st.Undecodable != 0 || st.Forged != 0 {
			t.Errorf("Notifier %d: %+v", i, st)
		}
	}
}
