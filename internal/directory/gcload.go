package directory

import (
	"runtime"
	"runtime/metrics"
	"sync"
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

// gcActive reports whether, since start, the garbage collector took more
// than an eighth of the process's processors: a collection ran during
// much of the probe. Unlike gcStarved it only postpones a judgement
// maxGCSkips rounds (see Directory.gcSkip), so that a process that is
// always collecting still detects a dead peer.
func gcActive(busy0 time.Duration, start time.Time) bool {
	return gcShareAbove(gcBusy()-busy0, time.Since(start), runtime.GOMAXPROCS(0), 8)
}

// gcShareOver reports whether busy is more than a quarter of procs
// processors over window.
func gcShareOver(busy, window time.Duration, procs int) bool {
	return gcShareAbove(busy, window, procs, 4)
}

// gcShareAbove reports whether busy is more than 1/part of procs
// processors over window.
func gcShareAbove(busy, window time.Duration, procs, part int) bool {
	return window > 0 && time.Duration(part)*busy > window*time.Duration(procs)
}

// maxGCSkips is how many probe rounds in a row a prober may leave a silent
// successor unjudged because a collection ran (see gcRecent): a collection
// delays answers for its length, a process that collects without pause
// must still detect a dead peer, one round later at most maxGCSkips times.
const maxGCSkips = 3

// gcClock notes when this process was last seen to finish a garbage
// collection. Every probe samples the cycle count, so with one directory
// per process the time is known within a probe period, and with many in
// one process (a test harness) within milliseconds.
var gcClock struct {
	mu     sync.Mutex
	cycles uint64
	seen   atomic.Int64 // UnixNano when cycles last changed
}

// gcCycles returns the number of collections the process completed.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// gcRecent reports whether a collection finished after t, as far as the
// samples of this process's probes tell. The backlog a collection of a big
// heap leaves (every message of the process late at once) outlives it, so
// a prober that saw one finish within its probe, or shortly before it, has
// no fair answer to judge.
func gcRecent(t time.Time) bool {
	n := gcCycles()
	gcClock.mu.Lock()
	if n != gcClock.cycles {
		gcClock.cycles = n
		gcClock.seen.Store(time.Now().UnixNano())
	}
	gcClock.mu.Unlock()
	return gcClock.seen.Load() > t.UnixNano()
}
