package main

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/bus"
)

// fastReconnect is the reconnect wait of the scale bus's Notifiers: Connect's
// own is 250 ms plus nats.go's jitter; the restart row measures the
// directory's recovery, not the wait.
var fastReconnect = notifier.WithNATSOptions(nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))

// waitPeersExact waits until every Notifier of ns knows exactly want peers,
// or until deadline; it returns how many did.
func waitPeersExact(ns []*notifier.Notifier, want int, deadline time.Time) int {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := 0
		for _, n := range ns {
			if n.Stats().Peers == want {
				ok++
			}
		}
		if ok == len(ns) || time.Now().After(deadline) {
			return ok
		}
		<-tick.C
	}
}

// peerCounts describes how many peers the Notifiers of ns know, for an
// error message: "200 peers: 199 Notifiers, 201 peers: 1".
func peerCounts(ns []*notifier.Notifier) string {
	counts := map[int]int{}
	for _, n := range ns {
		counts[n.Stats().Peers]++
	}
	keys := slices.Sorted(maps.Keys(counts))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d peers: %d Notifiers", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

// --- registration rates ---

// regRateRows measures registrations of one extra Notifier on the scale bus
// of ns: one sequential Subscribe at a time, 1,000 from 10 goroutines, and
// 1,000 in one Batch. The extra Notifier leaves with a goodbye afterwards.
func regRateRows(e *env, ns []*notifier.Notifier, prefix string) ([]Row, error) {
	nodes := len(ns)
	r, err := e.connectNotifier(prefix, notifier.WithRegisterTimeout(e.cfg.timeout))
	if err != nil {
		return nil, fmt.Errorf("registration rates: %w", err)
	}
	defer func() {
		_ = r.Close()
		waitPeersExact(ns, nodes-1, time.Now().Add(e.cfg.timeout))
	}()
	if got := waitPeersExact(ns, nodes, time.Now().Add(e.cfg.timeout)); got < nodes {
		return nil, fmt.Errorf("registration rates: only %d/%d Notifiers learned the new one (%s)", got, nodes, peerCounts(ns))
	}
	sub := &countSub{s: &sink{}}
	raw, err := rawRounds(e, nodes)
	if err != nil {
		return nil, err
	}
	e.logf("  raw nats.go rounds to %d repliers: one (64 B) median %s, process CPU %s a round; 100 (320 B) %s, CPU %s",
		nodes, fmtDur(raw.one), fmtDur(raw.oneCPU), fmtDur(raw.hundred), fmtDur(raw.hundredCPU))

	const seqN = 50
	stopProf := rowProf(e.cfg.rowsProfile, "seq")
	lat := make([]time.Duration, 0, seqN)
	seqCPU0 := processCPU()
	for k := range seqN {
		t := time.Now()
		if err := r.Subscribe("rseq", notifier.Exact(int64(k)), "c", sub); err != nil {
			return nil, fmt.Errorf("sequential Subscribe %d: %w", k, err)
		}
		lat = append(lat, time.Since(t))
	}
	seqCPU := (processCPU() - seqCPU0) / seqN
	stopProf()
	l := summarize(lat)
	seq := Row{
		Key: "scale", Name: fmt.Sprintf("scale %d: one sequential Subscribe (median, p99 of %d)", nodes, seqN),
		NotifierVal: l.p50.Seconds(), RatioVal: l.p50.Seconds(),
		Target: 0.050, TargetKind: below, TargetText: "< 50 ms",
	}
	seq.Notifier, seq.Raw, seq.Ratio = fmtDur(l.p50), fmtDur(raw.one), fmtDur(l.p50)
	seq.Notes = fmt.Sprintf("p99 %s, max %s; each confirmed by all %d peers before it returns; process CPU %s a call; raw: median round of a 64-byte message to %d nats.go repliers (the floor under one round), %.2f× of it (CPU: %s a round, %.2f×)",
		fmtDur(l.p99), fmtDur(slices.Max(lat)), nodes, fmtDur(seqCPU), nodes, l.p50.Seconds()/raw.one.Seconds(), fmtDur(raw.oneCPU), seqCPU.Seconds()/raw.oneCPU.Seconds())
	e.logf("  sequential Subscribe: median %s, p99 %s, process CPU %s a call", fmtDur(l.p50), fmtDur(l.p99), fmtDur(seqCPU))

	// Count the announcements of r (group commit: the changes they carry).
	var anns atomic.Int64
	annSub, err := r.Conn().Subscribe(bus.Subjects{Prefix: prefix}.Ann(r.Node()), func(*nats.Msg) { anns.Add(1) })
	if err != nil {
		return nil, fmt.Errorf("registration rates: %w", err)
	}
	defer func() { _ = annSub.Unsubscribe() }()
	if err := r.Conn().Flush(); err != nil {
		return nil, fmt.Errorf("registration rates: %w", err)
	}
	annsSeen := func(from int64) int64 {
		_ = r.Conn().Flush()
		return anns.Load() - from
	}

	const parN, workers = 1000, 10
	stopProf = rowProf(e.cfg.rowsProfile, "par")
	anns0 := anns.Load()
	cpu0 := processCPU()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for k := w; k < parN; k += workers {
				if err := r.Subscribe("rpar", notifier.Exact(int64(k)), "c", sub); err != nil {
					errs[w] = fmt.Errorf("goroutine %d registration %d: %w", w, k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	parDur := time.Since(t0)
	parCPU := processCPU() - cpu0
	stopProf()
	parAnns := annsSeen(anns0)
	e.logf("  %d registrations from %d goroutines: %s, %d announcements, process CPU %s (%s an announcement)",
		parN, workers, fmtDur(parDur), parAnns, fmtDur(parCPU), fmtDur(parCPU/time.Duration(max(parAnns, 1))))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	par := Row{
		Key: "scale", Name: fmt.Sprintf("scale %d: %d registrations from %d goroutines", nodes, parN, workers),
		NotifierVal: parDur.Seconds(), RatioVal: parDur.Seconds(),
		Target: 1, TargetKind: below, TargetText: "< 1 s",
	}
	par.Notifier, par.Raw, par.Ratio = fmtDur(parDur), fmtDur(raw.hundred), fmtDur(parDur)
	par.Notes = fmt.Sprintf("%.0f registrations/s on one Notifier, each confirmed by all %d peers; %d announcements (group commit: %.1f changes each, at most %d); process CPU %s (%s an announcement: the peers, the server and the caller share %d cores)",
		parN/parDur.Seconds(), nodes, parAnns, float64(parN)/float64(max(parAnns, 1)), workers,
		fmtDur(parCPU), fmtDur(parCPU/time.Duration(max(parAnns, 1))), runtime.GOMAXPROCS(0))
	par.Notes += fmt.Sprintf("; raw: 100 rounds of a 320-byte message to %d nats.go repliers (the floor under 100 rounds of 10 changes), %.2f× of it (CPU: %s, %.2f×)",
		nodes, parDur.Seconds()/raw.hundred.Seconds(), fmtDur(raw.hundredCPU), parCPU.Seconds()/raw.hundredCPU.Seconds())

	const bulkN = 1000
	b := r.Batch()
	for k := range bulkN {
		b.Subscribe("rbulk", notifier.Exact(int64(k)), "c", sub)
	}
	stopProf = rowProf(e.cfg.rowsProfile, "bulk")
	t1 := time.Now()
	if err := b.Commit(); err != nil {
		return nil, fmt.Errorf("batch of %d: %w", bulkN, err)
	}
	bulkDur := time.Since(t1)
	stopProf()
	e.logf("  %d registrations in one Batch: %s", bulkN, fmtDur(bulkDur))
	bulk := Row{
		Key: "scale", Name: fmt.Sprintf("scale %d: %d registrations in one Batch().Commit()", nodes, bulkN),
		NotifierVal: bulkDur.Seconds(), RatioVal: bulkDur.Seconds(),
		Target: 0.5, TargetKind: below, TargetText: "< 0.5 s",
	}
	bulk.Notifier, bulk.Raw, bulk.Ratio = fmtDur(bulkDur), "–", fmtDur(bulkDur)
	bulk.Notes = fmt.Sprintf("%.0f registrations/s, confirmed by all %d peers", bulkN/bulkDur.Seconds(), nodes)
	if n := r.Registrations(); len(n) != seqN+parN+bulkN {
		return nil, fmt.Errorf("registration rates: the Notifier holds %d registrations, want %d", len(n), seqN+parN+bulkN)
	}
	return []Row{seq, par, bulk}, nil
}

// --- crash detection ---

// ctlConn is a client connection the bench can kill or freeze.
type ctlConn struct {
	net.Conn
	mu     sync.Mutex
	frozen chan struct{} // non-nil while frozen; closed on release
}

func (c *ctlConn) gate() {
	c.mu.Lock()
	ch := c.frozen
	c.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (c *ctlConn) Read(p []byte) (int, error)  { c.gate(); return c.Conn.Read(p) }
func (c *ctlConn) Write(p []byte) (int, error) { c.gate(); return c.Conn.Write(p) }

// freeze makes every later Read and Write block until release; the TCP
// connection stays open.
func (c *ctlConn) freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen == nil {
		c.frozen = make(chan struct{})
	}
}

func (c *ctlConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen != nil {
		close(c.frozen)
		c.frozen = nil
	}
}

// ctlDialer is a nats.CustomDialer keeping the last connection it made.
type ctlDialer struct {
	last atomic.Pointer[ctlConn]
}

func (d *ctlDialer) Dial(network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).Dial(network, address)
	if err != nil {
		return nil, err
	}
	cc := &ctlConn{Conn: c}
	d.last.Store(cc)
	return cc, nil
}

// crashRows measures how long the Notifiers of ns take to drop one that
// dies without goodbye (its TCP connection closed) and one that freezes
// (reads and writes block, TCP open).
func crashRows(e *env, ns []*notifier.Notifier, prefix string) []Row {
	kill := crashRow(e, ns, prefix, "connection closed without goodbye", func(c *ctlConn) { _ = c.Conn.Close() })
	e.logf("  closed connection dropped: %s", kill.Notes)
	frozen := crashRow(e, ns, prefix, "frozen (reads and writes block, TCP open)", func(c *ctlConn) { c.freeze() })
	e.logf("  frozen connection dropped: %s", frozen.Notes)
	return []Row{kill, frozen}
}

func crashRow(e *env, ns []*notifier.Notifier, prefix, what string, fail func(*ctlConn)) Row {
	nodes := len(ns)
	row := Row{
		Key: "scale", Name: fmt.Sprintf("scale %d: peer %s dropped by all (median)", nodes, what),
		Target: 3, TargetKind: atMost, TargetText: "≤ 3 s",
	}
	d := &ctlDialer{}
	nc, err := nats.Connect(e.url, nats.Name("bench-victim"), nats.SetCustomDialer(d), nats.NoReconnect(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		row.Err = err
		return row
	}
	defer nc.Close()
	v, err := notifier.New(nc, e.notifierOpts(prefix)...)
	if err != nil {
		row.Err = fmt.Errorf("victim: %w", err)
		return row
	}
	c := d.last.Load()
	defer func() {
		c.release()
		_ = c.Conn.Close()
		_ = v.Close()
	}()
	if got := waitPeersExact(ns, nodes, time.Now().Add(e.cfg.timeout)); got < nodes {
		row.Err = fmt.Errorf("only %d/%d Notifiers learned the victim (%s)", got, nodes, peerCounts(ns))
		return row
	}
	// Let its join confirmations pass, so they do not count as the crash.
	settle := time.NewTimer(200 * time.Millisecond)
	<-settle.C
	detect := make([]float64, nodes)
	seen := make([]bool, nodes)
	left := nodes
	t0 := time.Now()
	fail(c)
	deadline := t0.Add(e.cfg.timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for left > 0 && time.Now().Before(deadline) {
		<-tick.C
		now := time.Since(t0)
		for i, n := range ns {
			if !seen[i] && n.Stats().Peers == nodes-1 {
				seen[i], detect[i] = true, now.Seconds()
				left--
			}
		}
	}
	var got []float64
	for i := range ns {
		if seen[i] {
			got = append(got, detect[i])
		}
	}
	med, mx := e.cfg.timeout.Seconds(), e.cfg.timeout.Seconds()
	if len(got) > 0 {
		med, mx = median(got), slices.Max(got)
	}
	if left > 0 {
		mx = e.cfg.timeout.Seconds()
	}
	row.NotifierVal, row.RatioVal = med, mx // the target holds for the slowest peer
	md, xd := time.Duration(med*1e9), time.Duration(mx*1e9)
	row.Notifier, row.Raw, row.Ratio = fmtDur(md), "–", fmtDur(xd)
	row.Notes = fmt.Sprintf("median %s, max %s (the ratio column, compared with the target) over %d peers polled every 10 ms; victim: notifier.New over a nats.Conn with a custom dialer and NoReconnect",
		fmtDur(md), fmtDur(xd), nodes)
	if left > 0 {
		row.Notes += fmt.Sprintf("; %d PEERS NEVER DROPPED IT within %s", left, fmtDur(e.cfg.timeout))
	}
	return row
}

// --- restart recovery ---

// restartRow restarts the embedded server under the bus of ns and measures
// the recovery: every Notifier knows N-1 peers again and one publish from
// each of a sample of Notifiers reaches a registration of its successor.
// recv counts the deliveries to the sample's "restart" registrations.
func restartRow(e *env, ns []*notifier.Notifier, recv *idSink) Row {
	nodes := len(ns)
	row := Row{Key: "scale", Name: fmt.Sprintf("scale %d: server restart, recovered (finding, no target)", nodes)}
	sample := min(nodes, restartSample)
	// Varz every 100 ms, across the restart: the peak rate is taken
	// between two samples of the same server (its counters restart at 0).
	var (
		peak     atomic.Uint64 // msgs/s in+out, whole numbers
		minPeers atomic.Int64
		stopVarz = make(chan struct{})
		varzDone = make(chan struct{})
	)
	go func() {
		defer close(varzDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var prev serverCounts
		var prevT time.Time
		have := false
		for {
			select {
			case <-stopVarz:
				return
			case now := <-tick.C:
				for _, n := range ns {
					if p := int64(n.Stats().Peers); p < minPeers.Load() {
						minPeers.Store(p)
					}
				}
				s := e.srv.Server()
				if s == nil {
					have = false
					continue
				}
				v, err := s.Varz(nil)
				if err != nil {
					have = false
					continue
				}
				c := serverCounts{v.InMsgs, v.OutMsgs, v.InBytes, v.OutBytes}
				if have && c.inMsgs >= prev.inMsgs && c.outMsgs >= prev.outMsgs {
					r := float64(c.inMsgs-prev.inMsgs+c.outMsgs-prev.outMsgs) / now.Sub(prevT).Seconds()
					for {
						p := peak.Load()
						if uint64(r) <= p || peak.CompareAndSwap(p, uint64(r)) {
							break
						}
					}
				}
				prev, prevT, have = c, now, true
			}
		}
	}()
	minPeers.Store(int64(nodes))
	t0 := time.Now()
	e.srv.Shutdown()
	down := time.Since(t0)
	if err := e.srv.Start(); err != nil {
		close(stopVarz)
		<-varzDone
		row.Err = fmt.Errorf("restart: %w", err)
		return row
	}
	up := time.Since(t0)
	// Publish rounds every 100 ms (publishes made before a connection is
	// back may be lost) until every sampled registration got one.
	rounds := 0
	deadline := t0.Add(e.cfg.timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	for recv.count() < sample && time.Now().Before(deadline) {
		rounds++
		for i := range sample {
			dst := (i + 1) % nodes
			if !recv.has(dst) {
				_ = ns[i].Publish("restart", int64(dst), "c", e.payload) // an error is a lost round
			}
		}
		<-tick.C
	}
	tick.Stop()
	got := recv.count()
	allDur := recv.last().Sub(t0)
	if got < sample {
		allDur = e.cfg.timeout
	}
	peers := waitPeersExact(ns, nodes-1, deadline)
	peersDur := time.Since(t0)
	// Keep sampling a little after the recovery, for late repairs.
	tail := time.NewTimer(time.Second)
	<-tail.C
	close(stopVarz)
	<-varzDone
	row.NotifierVal, row.RatioVal = allDur.Seconds(), allDur.Seconds()
	row.Notifier, row.Raw, row.Ratio = fmtDur(allDur), "–", "–"
	row.Notes = fmt.Sprintf("from Shutdown: server down after %s, up again at %s; %d/%d sampled registrations (each of %d Notifiers publishes to its successor's, a round every 100 ms, %d rounds) reached at %s; then %d/%d Notifiers knew exactly %d peers (at %s; min Peers seen while recovering: %d); peak server rate %s msgs/s in+out (Varz every 100 ms, until 1 s after); reconnect wait 20 ms",
		fmtDur(down), fmtDur(up), got, sample, sample, rounds, fmtDur(allDur), peers, nodes, nodes-1, fmtDur(peersDur), minPeers.Load(), fmtRate(float64(peak.Load())))
	if got < sample || peers < nodes {
		row.Notes += "; NOT RECOVERED"
	}
	return row
}

// restartSample is how many Notifiers publish after the restart.
const restartSample = 20

// idSink records which ids of the "restart" registrations got a
// notification, and when the last new one did.
type idSink struct {
	mu   sync.Mutex
	seen map[int64]bool
	at   time.Time
}

var _ notifier.Subscriber = (*idSink)(nil)

func (s *idSink) Notify(_ string, id int64, _ string, _ notifier.Args) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[int64]bool{}
	}
	if !s.seen[id] {
		s.seen[id], s.at = true, time.Now()
	}
}

func (s *idSink) has(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[int64(id)]
}

func (s *idSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *idSink) last() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at
}

// rowProf starts a CPU profile of one registration row in dir (none if dir
// is empty), with allocation profiles before and after it
// (go tool pprof -sample_index=alloc_space -base name.heap0 name.heap1),
// and returns the function that ends it.
func rowProf(dir, name string) func() {
	if dir == "" {
		return func() {}
	}
	heap := func(suffix string) {
		runtime.GC()
		if h, err := os.Create(filepath.Join(dir, name+suffix)); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(h, 0)
			_ = h.Close()
		}
	}
	f, err := os.Create(filepath.Join(dir, name+".prof"))
	if err != nil {
		return func() {}
	}
	heap(".heap0")
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		heap(".heap1")
	}
}
