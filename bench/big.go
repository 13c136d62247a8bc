package main

import (
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/natsnotifier/notifier"
)

// Shape of the big table: bigGroups (object, cmd) pairs; in each, bigMasks
// registrations on single-bit masks (bits 40 and up, so small ids never
// match them) and exact ids for the rest. A lookup probes 1+bigMasks masks.
const (
	bigObjects = 10
	bigCmds    = 10
	bigGroups  = bigObjects * bigCmds
	bigMasks   = 10
	// bigMissID matches no registration: exact ids start at 1<<20 and the
	// masks test high bits.
	bigMissID = 12345
)

func bigReg(n *notifier.Notifier, k int, sub notifier.Subscriber) error {
	g := k % bigGroups
	object := fmt.Sprintf("obj%d", g%bigObjects)
	cmd := fmt.Sprintf("cmd%d", g/bigObjects)
	j := k / bigGroups // index within the group
	if j < bigMasks {
		bit := int64(1) << (40 + j)
		return n.Subscribe(object, notifier.Match{Mask: bit, Value: bit}, cmd, sub)
	}
	return n.Subscribe(object, notifier.Exact(1<<20+int64(k)), cmd, sub)
}

// benchSenderMiss publishes n times to an id nobody registered: the cost is
// argument encoding plus the directory lookup.
func benchSenderMiss(nt *notifier.Notifier, payload []byte, n int) (time.Duration, uint64, error) {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for range n {
		if err := nt.Publish("obj3", bigMissID, "cmd3", payload); err != nil {
			return 0, 0, err
		}
	}
	d := time.Since(start)
	runtime.ReadMemStats(&m1)
	return d, m1.Mallocs - m0.Mallocs, nil
}

func runBig(e *env) ([]Row, error) {
	regs := e.cfg.bigRegs
	var c closer
	defer c.run()

	// An empty Notifier alone on its prefix: its heap cost, and the lookup
	// baseline.
	h0 := settledHeap()
	empty, err := e.connectNotifier(e.unique("benchempty"))
	if err != nil {
		return nil, err
	}
	c.add(func() { _ = empty.Close() })
	h1 := settledHeap()
	emptyCost := float64(h1) - float64(h0)

	prefix := e.unique("benchbig")
	owner, err := e.connectNotifier(prefix)
	if err != nil {
		return nil, err
	}
	c.add(func() { _ = owner.Close() })
	h2 := settledHeap()
	sub := &countSub{s: &sink{}}
	t := time.Now()
	for k := range regs {
		if err := bigReg(owner, k, sub); err != nil {
			return nil, fmt.Errorf("registration %d: %w", k, err)
		}
	}
	regDur := time.Since(t)
	h3 := settledHeap()
	perOwner := (float64(h3) - float64(h2)) / float64(regs)
	e.logf("  %d registrations in %v, %.0f B each on the owner", regs, regDur.Round(time.Millisecond), perOwner)

	t = time.Now()
	peer, err := e.connectNotifier(prefix)
	if err != nil {
		return nil, fmt.Errorf("second Notifier: %w", err)
	}
	c.add(func() { _ = peer.Close() })
	joinDur := time.Since(t)
	h4 := settledHeap()
	perPeer := (float64(h4) - float64(h3) - emptyCost) / float64(regs)
	e.logf("  second Notifier joined in %v, %.0f B per registration in its directory", joinDur.Round(time.Millisecond), perPeer)

	// Lookup: Publish to an id with no match, on the peer (a directory of
	// regs entries) and on the empty Notifier (an empty directory).
	m := e.cfg.n
	bigD, emptyD := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	var bigA, emptyA uint64
	for range 3 { // the best of three passes, interleaved
		gcQuiet()
		d, a, err := benchSenderMiss(peer, e.payload, m)
		if err != nil {
			return nil, err
		}
		bigD, bigA = min(bigD, d), a
		gcQuiet()
		if d, a, err = benchSenderMiss(empty, e.payload, m); err != nil {
			return nil, err
		}
		emptyD, emptyA = min(emptyD, d), a
	}
	perBig := float64(bigD.Nanoseconds()) / float64(m)
	perEmpty := float64(emptyD.Nanoseconds()) / float64(m)
	e.logf("  Publish without match: %.0f ns with %d registrations, %.0f ns empty", perBig, regs, perEmpty)

	name := fmt.Sprintf("%d registrations on one Notifier", regs)
	ownerRow := Row{
		Key: "big", Name: name + ": heap per registration, owner",
		NotifierVal: perOwner, RatioVal: perOwner, Target: 500, TargetKind: below, TargetText: "< 500 B",
	}
	ownerRow.Notifier, ownerRow.Raw, ownerRow.Ratio = fmtBytes(perOwner), "–", fmtBytes(perOwner)
	ownerRow.Notes = fmt.Sprintf("local table and own directory entry; registered in %s (%.0f/s, sequential, no peers)",
		fmtDur(regDur), float64(regs)/regDur.Seconds())
	peerRow := Row{
		Key: "big", Name: name + ": heap per registration, a peer's directory",
		NotifierVal: perPeer, RatioVal: perPeer, Target: 500, TargetKind: below, TargetText: "< 500 B",
	}
	peerRow.Notifier, peerRow.Raw, peerRow.Ratio = fmtBytes(perPeer), "–", fmtBytes(perPeer)
	peerRow.Notes = fmt.Sprintf("a second Notifier joined (fetching the whole table) in %s; an empty Notifier costs %s, subtracted",
		fmtDur(joinDur), fmtBytes(emptyCost))
	lookRow := Row{
		Key: "big", Name: name + ": Publish to an id without match (lookup)",
		NotifierVal: perBig, RawVal: perEmpty, HasRaw: true, RatioVal: perBig - perEmpty,
	}
	lookRow.Notifier = fmt.Sprintf("%.0f ns", perBig)
	lookRow.Raw = fmt.Sprintf("%.0f ns (empty directory)", perEmpty)
	lookRow.Ratio = fmt.Sprintf("%+.0f ns", lookRow.RatioVal)
	lookRow.Notes = fmt.Sprintf("%d groups (object, cmd) of %d, each probing %d masks; allocs/op %.2f (empty %.2f); n=%d",
		bigGroups, regs/bigGroups, bigMasks+1, float64(bigA)/float64(m), float64(emptyA)/float64(m), m)
	return []Row{ownerRow, peerRow, lookRow}, nil
}
