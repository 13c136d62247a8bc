package main

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// heapAfterGC returns HeapAlloc after collecting garbage.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// totalAlloc returns the bytes allocated so far by the process.
func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// scaleHeap is settledHeap, or 0 with -scale-heap=false: the collections
// it forces stall every Notifier of the process at once, which on a big
// bus (N = 1,000: a heap of 3-4 GiB on 2 cores) the failure detectors
// may see as a bus-wide freeze. With -scale-heap-once it is the heap after
// one collection: at N = 1,000 the transient garbage settledHeap waits out
// is small beside the tables, and each collection takes seconds.
func (e *env) scaleHeap() uint64 {
	switch {
	case !e.cfg.scaleHeap:
		return 0
	case e.cfg.heapOnce:
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	return settledHeap()
}

// settledHeap returns HeapAlloc once it stops moving: three readings 100 ms
// apart within 1 % of each other, or the last reading after 10 s. Right
// after joins and registrations the heap holds transient garbage and
// in-flight table fetches of the peers (each a SubscribeSync with nats.go's
// 64k-entry channel), which a single reading would count.
func settledHeap() uint64 {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(10 * time.Second)
	var last []uint64
	for {
		h := heapAfterGC()
		last = append(last, h)
		if len(last) > 3 {
			last = last[1:]
		}
		if len(last) == 3 {
			lo, hi := min(last[0], last[1], last[2]), max(last[0], last[1], last[2])
			if float64(hi-lo) <= 0.01*float64(hi) || time.Now().After(deadline) {
				return h
			}
		}
		<-tick.C
	}
}

func batchText(b bool) string {
	if b {
		return " (one Batch per Notifier, -scale-setup-batch)"
	}
	return " (one call each)"
}

func parText(par, nodes int) string {
	if par >= nodes {
		return "all Notifiers at once (-scale-par 0)"
	}
	return fmt.Sprintf("%d Notifiers at a time (-scale-par)", par)
}

// closeAll closes ns concurrently.
func closeAll(ns []*notifier.Notifier) {
	var wg sync.WaitGroup
	for _, n := range ns {
		wg.Go(func() { _ = n.Close() })
	}
	wg.Wait()
}

// scaleReg makes registration k of node i: 80 % full Subscribe on an exact
// id, 10 % Slice on a mask, 10 % RPCRegister on an exact id, spread over
// five objects and three cmds.
func scaleReg(n *notifier.Notifier, i, k int, sub notifier.Subscriber, resp notifier.Responder) error {
	object := fmt.Sprintf("obj%d", k%5)
	cmd := fmt.Sprintf("cmd%d", k%3)
	id := int64(i)*100_000 + int64(k)
	switch k % 10 {
	case 8:
		return n.Slice(object, notifier.Match{Mask: 0xff, Value: int64(k) & 0xff}, cmd, sub, 1)
	case 9:
		return n.RPCRegister(object, notifier.Exact(id), cmd, resp)
	}
	return n.Subscribe(object, notifier.Exact(id), cmd, sub)
}

// scaleBatchReg adds registration k of node i, as scaleReg makes it, to b.
func scaleBatchReg(b *notifier.Batch, i, k int, sub notifier.Subscriber, resp notifier.Responder) {
	object := fmt.Sprintf("obj%d", k%5)
	cmd := fmt.Sprintf("cmd%d", k%3)
	id := int64(i)*100_000 + int64(k)
	switch k % 10 {
	case 8:
		b.Slice(object, notifier.Match{Mask: 0xff, Value: int64(k) & 0xff}, cmd, sub, 1)
	case 9:
		b.RPCRegister(object, notifier.Exact(id), cmd, resp)
	default:
		b.Subscribe(object, notifier.Exact(id), cmd, sub)
	}
}

func runScale(e *env) ([]Row, error) {
	if e.cfg.servers <= 1 {
		return runScaleBus(e)
	}
	// A cluster of its own: the Notifiers connect to its servers in turn,
	// the victims of the crash rows to the first, and idle traffic is summed
	// over the servers.
	servers, err := testenv.StartCluster(e.cfg.servers)
	if err != nil {
		return nil, fmt.Errorf("cluster of %d: %w", e.cfg.servers, err)
	}
	srv, url := e.srv, e.url
	e.srv, e.url, e.cluster = servers[0], servers[0].URL(), servers
	defer func() {
		e.srv, e.url, e.cluster = srv, url, nil
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	rows, err := runScaleBus(e)
	for i := range rows {
		rows[i].Name = strings.Replace(rows[i].Name, "scale ", fmt.Sprintf("scale, %d servers: ", len(servers)), 1)
	}
	return rows, err
}

// runScaleBus builds the scale bus on e's server (or cluster) and measures
// it.
func runScaleBus(e *env) ([]Row, error) {
	nodes, regs := e.cfg.scaleNodes, e.cfg.scaleRegs
	prefix := e.unique("benchscale")
	// Setup Notifiers wait as long as the O(N²) registration storm needs;
	// the joiner measured below has the library defaults.
	setup := notifier.WithRegisterTimeout(30 * time.Minute)

	h0 := heapAfterGC()
	a0 := totalAlloc()
	t0 := time.Now()
	var (
		mu     sync.Mutex // guards ns against the guard's abort
		ns     []*notifier.Notifier
		regsOK atomic.Int64
	)
	abort := onceFunc(func() {
		mu.Lock()
		defer mu.Unlock()
		closeAll(ns) // pending registrations return ErrClosed
	})
	defer abort()
	guard := startHeapGuard(e, e.cfg.maxHeap, abort, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("%d Notifiers, %d/%d registrations confirmed; %s", len(ns), regsOK.Load(), nodes*regs, busHealth(e))
	})
	defer guard.Stop()
	tripped := func() error {
		if guard.tripped.Load() {
			return fmt.Errorf("heap passed %s (-max-heap-mib) while building the bus: a finding, see the log", fmtBytes(float64(e.cfg.maxHeap)))
		}
		return nil
	}
	joins := make([]float64, 0, nodes)
	cpar := max(e.cfg.connectPar, 1)
	cslots := make(chan struct{}, cpar) // Connects at once
	var (
		cwg     sync.WaitGroup
		cerrMu  sync.Mutex
		cerr    error
		joinsMu sync.Mutex
	)
	for i := range nodes {
		if err := tripped(); err != nil {
			cwg.Wait()
			return nil, err
		}
		cerrMu.Lock()
		failed := cerr != nil
		cerrMu.Unlock()
		if failed {
			break
		}
		cslots <- struct{}{}
		cwg.Go(func() {
			defer func() { <-cslots }()
			t := time.Now()
			n, err := e.connectNotifier(prefix, setup, fastReconnect)
			if err != nil {
				cerrMu.Lock()
				cerr = errors.Join(cerr, fmt.Errorf("setup node %d: %w", i, err))
				cerrMu.Unlock()
				return
			}
			d := time.Since(t)
			joinsMu.Lock()
			joins = append(joins, float64(d))
			joinsMu.Unlock()
			mu.Lock()
			if guard.tripped.Load() { // abort has closed ns already
				mu.Unlock()
				_ = n.Close()
				return
			}
			ns = append(ns, n)
			mu.Unlock()
			if (i+1)%max(nodes/8, 1) == 0 {
				e.logf("  node %d joined in %v", i+1, d.Round(time.Microsecond))
			}
		})
	}
	cwg.Wait()
	if err := tripped(); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, cerr
	}
	connectDur := time.Since(t0)
	a1 := totalAlloc()
	h1 := e.scaleHeap()
	e.logf("  %d Notifiers joined in %v (heap +%s)", nodes, connectDur.Round(time.Millisecond), fmtBytes(float64(h1)-float64(h0)))

	t1 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	par := e.cfg.scalePar
	if par <= 0 {
		par = nodes
	}
	// The first few setup errors are logged as they happen (all are
	// returned at the end): a stall then shows whether calls time out.
	var setupErrs atomic.Int64
	logSetupErr := func(err error) {
		if setupErrs.Add(1) <= 5 {
			e.logf("  setup error (of the first 5): %v", err)
		}
	}
	slots := make(chan struct{}, par) // Notifiers registering at once
	restartSink := &idSink{}
	for i, n := range ns {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			sub, resp := &countSub{s: &sink{}}, &echoResponder{}
			if e.cfg.setupBatch {
				b := n.Batch()
				for k := range regs {
					scaleBatchReg(b, i, k, sub, resp)
				}
				if err := b.Commit(); err != nil {
					errs[i] = fmt.Errorf("node %d batch of %d registrations: %w", i, regs, err)
					logSetupErr(errs[i])
					return
				}
				regsOK.Add(int64(regs))
				return
			}
			for k := range regs {
				if err := scaleReg(n, i, k, sub, resp); err != nil {
					errs[i] = fmt.Errorf("node %d registration %d: %w", i, k, err)
					logSetupErr(errs[i])
					return
				}
				regsOK.Add(1)
			}
		})
	}
	wg.Wait()
	regDur := time.Since(t1)
	a2 := totalAlloc()
	if err := tripped(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h2 := e.scaleHeap()
	total := nodes * regs
	delta := float64(h2) - float64(h1)
	perEntry := delta / float64(total*nodes)
	e.logf("  %d×%d registrations in %v (heap +%s, %.0f B per directory entry)", nodes, regs, regDur.Round(time.Millisecond), fmtBytes(delta), perEntry)

	// The restart row's targets, after the heap is measured: node i
	// receives one publish from node i-1.
	for i, n := range ns[:min(nodes, restartSample+1)] {
		if err := n.Subscribe("restart", notifier.Exact(int64(i)), "c", restartSink); err != nil {
			return nil, fmt.Errorf("node %d restart registration: %w", i, err)
		}
	}
	idle := idleRow(e, ns, regs)
	e.logf("  idle: %s msgs/s in+out (%s)", idle.Notifier, idle.Notes)

	// The joiner: Connect, register, then every other Notifier publishes to
	// each of its registrations once and all must arrive.
	// The joiner brings 50 registrations (-short: as many as the
	// others).
	joinRegs := 50
	if e.cfg.short {
		joinRegs = regs
	}
	joinTotal := nodes * joinRegs
	js := &sink{}
	r := js.arm(uint64(joinTotal))
	a3 := totalAlloc()
	start := time.Now()
	j, err := e.connectNotifier(prefix)
	if err != nil {
		return nil, fmt.Errorf("joiner: %w", err)
	}
	defer func() { _ = j.Close() }()
	joinDur := time.Since(start)
	// A service that starts with its registrations known registers them in
	// one Batch: one announcement and one acknowledgement round instead of
	// one each (the sequential row below measures one call's round).
	dest := &countSub{s: js}
	b := j.Batch()
	for k := range joinRegs {
		b.Subscribe("join", notifier.Exact(int64(k)), "c", dest)
	}
	if err := b.Commit(); err != nil {
		return nil, fmt.Errorf("joiner's registrations: %w", err)
	}
	registeredDur := time.Since(start)
	perrs := make([]error, nodes)
	for i, n := range ns {
		wg.Go(func() {
			for k := range joinRegs {
				if err := n.Publish("join", int64(k), "c", e.payload); err != nil {
					perrs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(perrs...); err != nil {
		return nil, err
	}
	timedOut := r.wait(func() uint64 { return j.Stats().Dropped }, start.Add(e.cfg.timeout))
	allDur := time.Unix(0, r.end.Load()).Sub(start)
	got := r.got.Load()
	a4 := totalAlloc()
	e.logf("  joiner: connect %v, +%d registrations (one Batch) %v, all %d/%d routed %v", joinDur, joinRegs, registeredDur, got, joinTotal, allDur)

	join := Row{
		Key: "scale", Name: fmt.Sprintf("scale %d×%d: new Notifier joins, registers %d, routed by all", nodes, regs, joinRegs),
		NotifierVal: allDur.Seconds(), RatioVal: allDur.Seconds(),
		Target: 2, TargetKind: atMost, TargetText: "≤ 2 s",
	}
	join.Notifier, join.Raw, join.Ratio = fmtDur(allDur), "–", fmtDur(allDur)
	join.Notes = fmt.Sprintf("Connect %s, %d registrations done at %s, %d/%d publishes from all %d others arrived; %s allocated meanwhile (process)",
		fmtDur(joinDur), joinRegs, fmtDur(registeredDur), got, joinTotal, nodes, fmtBytes(float64(a4-a3)))
	if timedOut || got < uint64(joinTotal) {
		join.Notes += fmt.Sprintf("; NOT ALL ARRIVED (dropped %d)", j.Stats().Dropped)
		join.RatioVal = float64(e.cfg.timeout / time.Second) // fails the target
	}
	mem := Row{
		Key: "scale", Name: fmt.Sprintf("scale %d×%d: heap per registration per directory", nodes, regs),
		NotifierVal: perEntry, RatioVal: perEntry,
		Target: 500, TargetKind: below, TargetText: "< 500 B",
	}
	mem.Notifier, mem.Raw, mem.Ratio = fmtBytes(perEntry), "–", fmtBytes(perEntry)
	mem.Notes = fmt.Sprintf("heap +%s for %d registrations known by %d directories (%s per registration bus-wide, owners' local tables included)",
		fmtBytes(delta), total, nodes, fmtBytes(delta/float64(total)))
	if e.cfg.heapOnce {
		mem.Notes += " (one collection per reading, -scale-heap-once)"
	}
	if !e.cfg.scaleHeap {
		mem = Row{Key: "scale", Name: mem.Name, Notifier: "–", Raw: "–", Ratio: "–",
			Notes: "not measured (-scale-heap=false: no forced collections)"}
	}
	setupRow := Row{
		Key: "scale", Name: fmt.Sprintf("scale %d×%d: setup (finding, no target)", nodes, regs),
		NotifierVal: (connectDur + regDur).Seconds(), RatioVal: (connectDur + regDur).Seconds(),
	}
	setupRow.Notifier, setupRow.Raw, setupRow.Ratio = fmtDur(connectDur+regDur), "–", "–"
	setupRow.Notes = fmt.Sprintf("%d Connects (%d at a time, -scale-connect-par) %s (median %s, last %s; %s allocated; empty Notifier %s heap each); "+
		"%d×%d registrations%s, %s, %s (%.0f registrations/s, each confirmed by %d peers; %s allocated)",
		nodes, cpar, fmtDur(connectDur), fmtDur(time.Duration(median(joins))), fmtDur(time.Duration(joins[len(joins)-1])),
		fmtBytes(float64(a1-a0)), fmtBytes((float64(h1)-float64(h0))/float64(nodes)),
		nodes, regs, batchText(e.cfg.setupBatch), parText(par, nodes), fmtDur(regDur), float64(total)/regDur.Seconds(), nodes-1, fmtBytes(float64(a2-a1)))
	setupRow.Notes += fmt.Sprintf("; peak live heap %s", fmtBytes(float64(guard.peak.Load())))
	_ = j.Close() // with goodbye
	if got := waitPeersExact(ns, nodes-1, time.Now().Add(e.cfg.timeout)); got < nodes {
		return nil, fmt.Errorf("after the joiner left, only %d/%d Notifiers knew exactly %d peers", got, nodes, nodes-1)
	}
	rows := []Row{idle, join, mem, setupRow}
	rates, err := regRateRows(e, ns, prefix)
	if err != nil {
		rows = append(rows, Row{Key: "scale", Name: fmt.Sprintf("scale %d: registration rates", nodes), Err: err})
	} else {
		rows = append(rows, rates...)
	}
	rows = append(rows, crashRows(e, ns, prefix)...)
	if len(e.cluster) > 0 {
		rows = append(rows, Row{Key: "scale", Name: fmt.Sprintf("scale %d: server restart (finding, no target)", nodes),
			Notifier: "–", Raw: "–", Ratio: "–", Notes: "not measured on a cluster: run with -scale-servers 1"})
		return rows, nil
	}
	rows = append(rows, restartRow(e, ns, restartSink))
	return rows, nil
}
