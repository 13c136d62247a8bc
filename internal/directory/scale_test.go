package directory

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// scaleRegs returns 10 registrations of node i.
func scaleRegs(i int) []Reg {
	out := make([]Reg, 10)
	for k := range out {
		out[k] = Reg{ID: uint64(k + 1), Kind: bus.KindPub, Object: fmt.Sprintf("o%d", i), Cmd: "c", Mask: -1, Value: int64(k)}
	}
	return out
}

// TestClusterScale: 100 nodes spread over a 3-server cluster, 10
// registrations each, with the default probe period: every node knows
// every registration once the joins and registrations returned; idle
// traffic, from the servers' own counters, stays within 10 messages per
// node and second (in plus out, summed over the servers: ring probes cost
// 8 a node); a node whose connection closes without goodbye is dropped by
// every other within the 3 s bound.
func TestClusterScale(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	const n = 100
	servers := testenv.RunCluster(t, 3)
	dirs := make([]*Directory, n)
	conns := make([]*nats.Conn, n)
	for i := range n {
		conns[i] = testenv.Connect(t, servers[i%3].URL(), nats.IgnoreDiscoveredServers())
		dirs[i] = join(t, conns[i], fmt.Sprintf("n%03d", i), withHeartbeat(DefaultHeartbeat), withTimeout(DefaultTimeout))
		if err := dirs[i].Announce(scaleRegs(i), nil).Wait(waitTimeout); err != nil {
			t.Fatalf("node %d registrations: %v", i, err)
		}
	}
	for i, d := range dirs {
		if got := d.Len(bus.KindPub); got != 10*n {
			t.Fatalf("node %d knows %d registrations, want %d", i, got, 10*n)
		}
		full, _ := d.Lookup(bus.KindPub, fmt.Sprintf("o%d", (i+37)%n), "c", 3, nil, nil)
		if len(full) != 1 || full[0].Key.Node != fmt.Sprintf("n%03d", (i+37)%n) {
			t.Fatalf("node %d routes o%d to %+v", i, (i+37)%n, full)
		}
	}

	// Idle traffic: the servers' counters over two probe periods.
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
	start := time.Now()
	// A wait of two probe periods is the measurement itself, not a
	// synchronisation.
	<-time.After(2 * DefaultHeartbeat)
	in1, out1 := counts()
	secs := time.Since(start).Seconds()
	rate := float64(in1-in0+out1-out0) / secs
	t.Logf("idle, %d nodes on 3 servers: %.0f msgs/s in, %.0f out (servers summed, routes included)", n, float64(in1-in0)/secs, float64(out1-out0)/secs)
	// Each message crossing a route is counted by both servers: allow
	// for it over the 10·N target of one server.
	if limit := 3 * 10 * float64(n); rate > limit {
		t.Errorf("idle traffic %.0f msgs/s over the 3 servers, want at most %.0f", rate, limit)
	}
	for i, d := range dirs {
		if st := d.Stats(); st.Undecodable != 0 || st.Forged != 0 || st.DropsReported != 0 {
			t.Fatalf("node %d while idle: %+v", i, st)
		}
	}

	// Crash: node 50's connection closes without a goodbye.
	conns[50].Close()
	start = time.Now()
	for i, d := range dirs {
		if i == 50 {
			continue
		}
		eventually(t, 3*time.Second+time.Second, func() bool { return d.Len(bus.KindPub) == 10*(n-1) }, "node %d drops node 50", i)
	}
	t.Logf("closed node dropped by all %d others after %v", n-1, time.Since(start))
}

// TestIdleScale measures idle traffic of N nodes (10 registrations each)
// on one server, N from $NOTIFIER_SCALE_N (skipped without it): the
// stand-in for the bench rows, see the README "Scale" section.
func TestIdleScale(t *testing.T) {
	var n int
	if _, err := fmt.Sscan(os.Getenv("NOTIFIER_SCALE_N"), &n); err != nil || n < 2 {
		t.Skip("set NOTIFIER_SCALE_N")
	}
	s := startServer(t)
	dirs := make([]*Directory, n)
	start := time.Now()
	for i := range n {
		dirs[i] = join(t, testenv.Connect(t, s.URL()), fmt.Sprintf("n%04d", i), withHeartbeat(DefaultHeartbeat), withTimeout(DefaultTimeout))
		if err := dirs[i].Announce(scaleRegs(i), nil).Wait(waitTimeout); err != nil {
			t.Fatalf("node %d registrations: %v", i, err)
		}
	}
	t.Logf("%d joins and 10 registrations each in %v", n, time.Since(start))
	v0, _ := s.Server().Varz(nil)
	t0 := time.Now()
	<-time.After(5 * DefaultHeartbeat) // the measurement window
	v1, _ := s.Server().Varz(nil)
	secs := time.Since(t0).Seconds()
	t.Logf("N=%d idle: %.0f msgs/s in, %.0f out, %.0f bytes/s in, %.0f out", n,
		float64(v1.InMsgs-v0.InMsgs)/secs, float64(v1.OutMsgs-v0.OutMsgs)/secs,
		float64(v1.InBytes-v0.InBytes)/secs, float64(v1.OutBytes-v0.OutBytes)/secs)
	var und, forged, drops uint64
	for _, d := range dirs {
		st := d.Stats()
		und, forged, drops = und+st.Undecodable, forged+st.Forged, drops+st.DropsReported
	}
	t.Logf("undecodable %d, forged %d, drops %d", und, forged, drops)
	if und+forged+drops != 0 {
		t.Errorf("idle bus: undecodable %d, forged %d, drops %d", und, forged, drops)
	}
}
