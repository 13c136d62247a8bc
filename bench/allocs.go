package main

import (
	"cmp"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Allocation classes: which side of a message an allocation belongs to,
// judged by the allocating goroutine's stack.
const (
	classSender   = "sender"   // publish loop / caller, and the caller's reply dispatch
	classReceiver = "receiver" // subscription dispatch, handlers, replies sent by responders
	classRead     = "read"     // nats.go read loop (message parsing) of any connection
	classServer   = "server"   // the embedded nats-server
	classOther    = "other"    // runtime, heartbeats, the harness
)

// classify attributes one allocation stack (function names, innermost first).
func classify(fns []string) string {
	has := func(subs ...string) bool {
		for _, f := range fns {
			for _, s := range subs {
				if strings.Contains(f, s) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has(".benchSender", "(*rpcClient).onReply", "(*Conn).respHandler"):
		return classSender
	case has("nats-server/v2/"):
		return classServer
	case has(".benchResponder", "(*Notifier).onRPC", "(*Notifier).serve", "(*Notifier).onPub",
		"(*Notifier).deliver", "(*Notifier).drain", "nats.go/micro.", "(*sink).", "(*countSub).", "(*Conn).waitForMsgs"):
		return classReceiver
	case has("(*Conn).readLoop", "(*Conn).processMsg"):
		return classRead
	}
	return classOther
}

// allocProfile is the allocations made while a function ran.
type allocProfile struct {
	mallocs uint64           // runtime.MemStats.Mallocs delta: exact
	bytes   uint64           // TotalAlloc delta
	byClass map[string]int64 // from the memory profile at rate 1
	sampled int64            // sum of byClass
	sites   map[string]int64 // "class: innermost non-runtime function (file:line)"
}

// topSites renders the k sites with the most allocations, per n messages.
func (p allocProfile) topSites(k, n int) string {
	type site struct {
		name string
		cnt  int64
	}
	var all []site
	for s, c := range p.sites {
		all = append(all, site{s, c})
	}
	slices.SortFunc(all, func(a, b site) int { return cmp.Compare(b.cnt, a.cnt) })
	var b strings.Builder
	for _, s := range all[:min(k, len(all))] {
		fmt.Fprintf(&b, "\n      %6.2f  %s", float64(s.cnt)/float64(n), s.name)
	}
	return b.String()
}

// siteOf names an allocation by its innermost frame outside the runtime.
func siteOf(frames []runtime.Frame) string {
	for _, f := range frames {
		if strings.HasPrefix(f.Function, "runtime.") || strings.HasPrefix(f.Function, "internal/") {
			continue
		}
		return fmt.Sprintf("%s (%s:%d)", f.Function, filepath.Base(f.File), f.Line)
	}
	return "runtime"
}

// per returns the class counts per message.
func (p allocProfile) per(class string, n int) float64 { return float64(p.byClass[class]) / float64(n) }

// memProfile returns the cumulative allocation counts per stack.
func memProfile() map[[32]uintptr]int64 {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		n, ok = runtime.MemProfile(recs, true)
		if ok {
			break
		}
	}
	out := make(map[[32]uintptr]int64, n)
	for _, r := range recs[:n] {
		out[r.Stack0] += r.AllocObjects
	}
	return out
}

// profileAllocs runs f and attributes its allocations. The caller has set
// runtime.MemProfileRate to 1.
func profileAllocs(f func() error) (allocProfile, error) {
	// A record reaches the profile only after up to two GC cycles.
	runtime.GC()
	runtime.GC()
	before := memProfile()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err := f()
	runtime.ReadMemStats(&m1)
	runtime.GC()
	runtime.GC()
	after := memProfile()
	p := allocProfile{
		mallocs: m1.Mallocs - m0.Mallocs,
		bytes:   m1.TotalAlloc - m0.TotalAlloc,
		byClass: map[string]int64{},
		sites:   map[string]int64{},
	}
	for stk, cnt := range after {
		d := cnt - before[stk]
		if d <= 0 {
			continue
		}
		var fns []string
		var frs []runtime.Frame
		frames := runtime.CallersFrames(trimStack(stk[:]))
		for {
			fr, more := frames.Next()
			fns = append(fns, fr.Function)
			frs = append(frs, fr)
			if !more {
				break
			}
		}
		class := classify(fns)
		p.byClass[class] += d
		p.sites[class+": "+siteOf(frs)] += d
		p.sampled += d
	}
	return p, err
}

func trimStack(s []uintptr) []uintptr {
	for i, pc := range s {
		if pc == 0 {
			return s[:i]
		}
	}
	return s
}

func runAllocs(e *env) ([]Row, error) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1 // every allocation, for the attribution
	defer func() { runtime.MemProfileRate = old }()

	pubRows, err := allocsPublish(e)
	if err != nil {
		return nil, err
	}
	rpcRows, err := allocsRPC(e)
	if err != nil {
		return nil, err
	}
	return append(pubRows, rpcRows...), nil
}

// allocRows builds the total row and one row per class.
func allocRows(what string, n int, nt, raw allocProfile, classes []string, names map[string]string, extra string) []Row {
	total := Row{
		Key: "allocs", Name: "allocs per " + what + ", whole process",
		NotifierVal: float64(nt.mallocs) / float64(n), RawVal: float64(raw.mallocs) / float64(n), HasRaw: true,
	}
	total.RatioVal = total.NotifierVal - total.RawVal
	total.Notifier, total.Raw = fmt.Sprintf("%.2f", total.NotifierVal), fmt.Sprintf("%.2f", total.RawVal)
	total.Ratio = fmt.Sprintf("%+.2f", total.RatioVal)
	total.Notes = fmt.Sprintf("bytes/op Notifier %.0f, raw %.0f; n=%d; attributed %d / %d allocs (Notifier), %d / %d (raw)%s",
		float64(nt.bytes)/float64(n), float64(raw.bytes)/float64(n), n, nt.sampled, nt.mallocs, raw.sampled, raw.mallocs, extra)
	rows := []Row{total}
	for _, c := range classes {
		r := Row{
			Key: "allocs", Name: "  … " + names[c],
			NotifierVal: nt.per(c, n), RawVal: raw.per(c, n), HasRaw: true, mayBeZero: true,
		}
		r.RatioVal = r.NotifierVal - r.RawVal
		r.Notifier, r.Raw = fmt.Sprintf("%.2f", r.NotifierVal), fmt.Sprintf("%.2f", r.RawVal)
		r.Ratio = fmt.Sprintf("%+.2f", r.RatioVal)
		rows = append(rows, r)
	}
	return rows
}

func allocsPublish(e *env) ([]Row, error) {
	p, err := newPubPair(e, pubShape{receivers: 1})
	if err != nil {
		return nil, err
	}
	defer p.close()
	n := max(e.cfg.n/10, 2000)
	prof := map[string]allocProfile{}
	var drops []string
	for _, v := range []string{variantRaw, variantNotifier} {
		if err := p.round(e, v, n); err != nil { // warm-up
			return nil, err
		}
		rig, s := p.raw, p.rawS
		if v == variantNotifier {
			rig, s = p.nt, p.ntS
		}
		var res pubResult
		pr, err := profileAllocs(func() error {
			var err error
			res, err = measurePub(rig, s, n, 1, e.cfg.timeout)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		if res.dropped > 0 || res.timedOut {
			drops = append(drops, fmt.Sprintf("%s dropped %d, timed out %v", v, res.dropped, res.timedOut))
		}
		e.logf("  %-8s publish: %d allocs / %d msgs, classes %v; top sites per msg:%s", v, pr.mallocs, n, pr.byClass, pr.topSites(12, n))
		prof[v] = pr
	}
	// On the publish path the read loop parses for the receiver only.
	for _, v := range []string{variantRaw, variantNotifier} {
		pr := prof[v]
		pr.byClass[classReceiver] += pr.byClass[classRead]
		delete(pr.byClass, classRead)
	}
	extra := ""
	if len(drops) > 0 {
		extra = "; " + strings.Join(drops, "; ")
	}
	names := map[string]string{
		classSender:   "sender (Publish call)",
		classReceiver: "receiver (read, dispatch, Notify)",
		classServer:   "server",
		classOther:    "other (runtime, heartbeats, harness)",
	}
	return allocRows("publish 1→1", n, prof[variantNotifier], prof[variantRaw],
		[]string{classSender, classReceiver, classServer, classOther}, names, extra), nil
}

func allocsRPC(e *env) ([]Row, error) {
	rs, err := newRPCRigs(e, false)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	n := max(e.cfg.rpcN/4, 1000)
	prof := map[string]allocProfile{}
	lat := make([]time.Duration, 0, n)
	for _, v := range []string{variantRaw, variantNotifier} {
		rig := rs.rig(v)
		if lat, err = benchSenderCallLoop(rig, max(n/10, 100), lat); err != nil { // warm-up
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		pr, err := profileAllocs(func() error {
			var err error
			lat, err = benchSenderCallLoop(rig, n, lat)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		e.logf("  %-8s rpc: %d allocs / %d calls, classes %v; top sites per call:%s", v, pr.mallocs, n, pr.byClass, pr.topSites(25, n))
		prof[v] = pr
	}
	names := map[string]string{
		classSender:   "caller (RPC call, reply dispatch)",
		classReceiver: "responder (dispatch, handler, reply)",
		classRead:     "nats.go read loop, both connections",
		classServer:   "server",
		classOther:    "other (runtime, heartbeats, harness)",
	}
	return allocRows("RPC", n, prof[variantNotifier], prof[variantRaw],
		[]string{classSender, classReceiver, classRead, classServer, classOther}, names, ""), nil
}
