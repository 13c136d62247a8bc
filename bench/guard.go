package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// heapGuard watches the live heap while a scenario builds a large bus, so that
// a runaway (for instance messages piling up in client buffers) ends the
// scenario with an error instead of exhausting the machine's memory. It also
// logs progress.
type heapGuard struct {
	limit   uint64
	peak    atomic.Uint64
	tripped atomic.Bool
	stop    chan struct{}
	done    chan struct{}
}

// liveHeap returns the heap found live by the last GC, without stopping the
// world. (The heap itself may reach about twice that with GOGC=100.)
func liveHeap() uint64 { return uintMetric("/gc/heap/live:bytes") }

// uintMetric reads one runtime/metrics counter; 0 if the runtime has none
// of that name.
func uintMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// startHeapGuard checks the heap every 100 ms. When it passes limit, onTrip
// runs once (on the guard's goroutine). progress, if not nil, is logged every
// 5 s.
func startHeapGuard(e *env, limit uint64, onTrip func(), progress func() string) *heapGuard {
	g := &heapGuard{limit: limit, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		lines := 0
		for {
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
			h := liveHeap()
			if h > g.peak.Load() {
				g.peak.Store(h)
			}
			if progress != nil && time.Since(last) >= 5*time.Second {
				last = time.Now()
				e.logf("  … heap %s (peak %s): %s", fmtBytes(float64(h)), fmtBytes(float64(g.peak.Load())), progress())
				if lines++; lines%6 == 0 {
					e.logf("  … the Notifiers' log lines so far, by message and reason:%s", e.events.detail())
				}
			}
			if h > g.limit && !g.tripped.Swap(true) {
				e.logf("  heap %s passed the limit %s: aborting the scenario", fmtBytes(float64(h)), fmtBytes(float64(g.limit)))
				if path, err := writeHeapProfile(); err == nil {
					e.logf("  heap profile at the limit: %s (go tool pprof -top -sample_index=inuse_space %s)", path, path)
				}
				onTrip()
			}
		}
	}()
	return g
}

// Stop ends the watch and returns the peak heap seen and whether the limit
// was passed.
func (g *heapGuard) Stop() (peak uint64, tripped bool) {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
	return g.peak.Load(), g.tripped.Load()
}

// writeHeapProfile writes the in-use heap profile to a temporary file.
func writeHeapProfile() (string, error) {
	f, err := os.CreateTemp("", "bench-heap-*.prof")
	if err != nil {
		return "", err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// onceFunc is sync.OnceFunc, named for readability at call sites.
func onceFunc(f func()) func() { return sync.OnceFunc(f) }

// busHealth is what the progress lines add to tell a stall's cause: the
// collections the process completed and the slow consumers the servers
// counted (a client whose socket they could not write fast enough).
func busHealth(e *env) string {
	var slow int64
	for _, s := range e.servers() {
		srv := s.Server()
		if srv == nil {
			continue // restarting (the restart row)
		}
		if v, err := srv.Varz(nil); err == nil {
			slow += v.SlowConsumers
		}
	}
	return fmt.Sprintf("%d collections, %d slow consumers, %s", gcCycles(), slow, e.events.summary())
}

// gcCycles returns the collections the process completed.
func gcCycles() uint64 { return uintMetric("/gc/cycles/total:gc-cycles") }
