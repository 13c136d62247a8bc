package directory

import (
	"runtime"
	"runtime/metrics"
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
