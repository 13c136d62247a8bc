package directory

import (
	"runtime"
	"runtime/metrics"
	"slices"
	"sync/atomic"
	"time"
)

// gcBusyMetrics are the CPU the garbage collector takes from the program:
// mark assists, dedicated mark workers and pauses (not its marking on
// otherwise idle processors).
var gcBusyMetrics = []string{
	"/cpu/classes/gc/mark/assist:cpu-seconds",
	"/cpu/classes/gc/mark/dedicated:cpu-seconds",
	"/cpu/classes/gc/pause:cpu-seconds",
}

// gcBusy returns the CPU time the garbage collector has taken from the
// program so far.
func gcBusy() time.Duration {
	s := make([]metrics.Sample, len(gcBusyMetrics))
	for i, n := range gcBusyMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	var sec float64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindFloat64 {
			sec += v.Value.Float64()
		}
	}
	return time.Duration(sec * float64(time.Second))
}

// gcStarved reports whether, since start, the garbage collector took more
// than a quarter of the process's processors (gcBusy was busy0 then). A
// long collection of a big heap slows every message of the process at
// once, the answers to our probes among them: no time to judge a peer.
func gcStarved(busy0 time.Duration, start time.Time) bool {
	return gcShareOver(gcBusy()-busy0, time.Since(start), runtime.GOMAXPROCS(0))
}

// gcShareOver reports whether busy is more than a quarter of procs
// processors over window.
func gcShareOver(busy, window time.Duration, procs int) bool {
	return window > 0 && 4*busy > window*time.Duration(procs)
}

// schedSnap is a reading of the scheduler's latency histogram: how long
// goroutines waited, runnable, before they ran.
type schedSnap struct {
	at      time.Time
	counts  []uint64
	buckets []float64 // bucket i is [buckets[i], buckets[i+1]) seconds
}

// lastSched is the process's latest reading; probes start from it when it
// is fresh, so that a bus of many nodes in one process reads the
// histogram a few times a second, not once per probe.
var lastSched atomic.Pointer[schedSnap]

// schedFresh is how old a reading a probe may start from.
const schedFresh = 100 * time.Millisecond

func readSched() *schedSnap {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	snap := &schedSnap{at: time.Now()}
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		h := s[0].Value.Float64Histogram()
		snap.counts = slices.Clone(h.Counts)
		snap.buckets = h.Buckets // not modified by later reads
	}
	lastSched.Store(snap)
	return snap
}

// schedSnapshot returns a reading at most schedFresh old.
func schedSnapshot() *schedSnap {
	if s := lastSched.Load(); s != nil && time.Since(s.at) < schedFresh {
		return s
	}
	return readSched()
}

// schedLagged reports whether, since the reading s0, some goroutine of the
// process waited at least lag to run: the process had more to run than
// processors, so its messages (probe answers, refutations) wait too, and a
// silence means nothing about the peer.
func schedLagged(s0 *schedSnap, lag time.Duration) bool {
	s1 := readSched()
	if len(s0.counts) != len(s1.counts) {
		return false
	}
	for i := len(s1.counts) - 1; i >= 0 && i < len(s1.buckets); i-- {
		if s1.buckets[i] < lag.Seconds() {
			break
		}
		if s1.counts[i] > s0.counts[i] {
			return true
		}
	}
	return false
}
