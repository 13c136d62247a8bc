package main

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
)

// pubShape is the receiving side of a publish scenario.
type pubShape struct {
	receivers int  // Notifiers, or raw subscriber connections
	slice     bool // Slice with equal weights / one raw queue group
}

// perMsg is how many deliveries one publish makes.
func (s pubShape) perMsg() int {
	if s.slice {
		return 1
	}
	return s.receivers
}

// pubRig is a publisher and its receivers, set up once and measured in
// rounds.
type pubRig interface {
	// send publishes n messages.
	send(n int) error
	// dropped is the receivers' drop count so far.
	dropped() uint64
	close()
}

// pubResult is one measured round.
type pubResult struct {
	sent     int
	want     uint64
	got      uint64
	dropped  uint64
	elapsed  time.Duration // first send to last receipt
	timedOut bool
}

// rate is messages per second as the issue defines it: fully delivered
// publishes per second (for 1→1, messages per second at the receiver).
func (r pubResult) rate(perMsg int) float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.got) / float64(perMsg) / r.elapsed.Seconds()
}

// measurePub runs one round of n messages on rig, whose receivers count into s.
func measurePub(rig pubRig, s *sink, n, perMsg int, timeout time.Duration) (pubResult, error) {
	want := uint64(n * perMsg)
	d0 := rig.dropped()
	r := s.arm(want)
	start := time.Now()
	if err := rig.send(n); err != nil {
		return pubResult{}, err
	}
	timedOut := r.wait(func() uint64 { return rig.dropped() - d0 }, start.Add(timeout))
	res := pubResult{
		sent:     n,
		want:     want,
		got:      r.got.Load(),
		dropped:  rig.dropped() - d0,
		elapsed:  time.Unix(0, r.end.Load()).Sub(start),
		timedOut: timedOut,
	}
	return res, nil
}

// --- raw nats.go ---

type rawPubRig struct {
	pub     *nats.Conn
	subj    string
	payload []byte
	subs    []*nats.Subscription
	c       closer
}

func newRawPubRig(e *env, shape pubShape, s *sink) (*rawPubRig, error) {
	r := &rawPubRig{subj: e.unique("bench.raw.pub."), payload: e.payload}
	var err error
	labeled(variantRaw, func() { err = r.setup(e, shape, s) })
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *rawPubRig) setup(e *env, shape pubShape, s *sink) error {
	for range shape.receivers {
		nc, err := e.connectRaw()
		if err != nil {
			return err
		}
		r.c.add(nc.Close)
		var sub *nats.Subscription
		if shape.slice {
			sub, err = nc.QueueSubscribe(r.subj, "q", s.onMsg)
		} else {
			sub, err = nc.Subscribe(r.subj, s.onMsg)
		}
		if err != nil {
			return err
		}
		r.subs = append(r.subs, sub)
		if err := nc.Flush(); err != nil { // the server has the interest
			return err
		}
	}
	nc, err := e.connectRaw()
	if err != nil {
		return err
	}
	r.c.add(nc.Close)
	r.pub = nc
	return nil
}

func (r *rawPubRig) send(n int) (err error) {
	labeled(variantRaw, func() { err = benchSenderRaw(r.pub, r.subj, r.payload, n) })
	return err
}

// benchSenderRaw is the raw publish loop. Its name marks the sender side in
// the allocation attribution.
func benchSenderRaw(nc *nats.Conn, subj string, payload []byte, n int) error {
	for range n {
		if err := nc.Publish(subj, payload); err != nil {
			return err
		}
	}
	return nil
}

func (r *rawPubRig) dropped() uint64 {
	var d uint64
	for _, s := range r.subs {
		if n, err := s.Dropped(); err == nil {
			d += uint64(n)
		}
	}
	return d
}

func (r *rawPubRig) close() { r.c.run() }

// --- Notifier ---

type notifierPubRig struct {
	pub       *notifier.Notifier
	receivers []*notifier.Notifier
	payload   []byte
	c         closer
}

func newNotifierPubRig(e *env, shape pubShape, s *sink) (*notifierPubRig, error) {
	r := &notifierPubRig{payload: e.payload}
	var err error
	labeled(variantNotifier, func() { err = r.setup(e, shape, s) })
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *notifierPubRig) setup(e *env, shape pubShape, s *sink) error {
	prefix := e.unique("benchpub")
	dest := &countSub{s: s}
	for range shape.receivers {
		n, err := e.connectNotifier(prefix)
		if err != nil {
			return err
		}
		r.c.add(func() { _ = n.Close() })
		r.receivers = append(r.receivers, n)
		if shape.slice {
			err = n.Slice(benchObject, notifier.Match{}, benchCmd, dest, 1)
		} else {
			err = n.Subscribe(benchObject, notifier.Match{}, benchCmd, dest)
		}
		if err != nil {
			return fmt.Errorf("register: %w", err)
		}
	}
	n, err := e.connectNotifier(prefix)
	if err != nil {
		return err
	}
	r.c.add(func() { _ = n.Close() })
	r.pub = n
	return nil
}

func (r *notifierPubRig) send(n int) (err error) {
	labeled(variantNotifier, func() { err = benchSenderNotifier(r.pub, r.payload, n) })
	return err
}

// benchSenderNotifier is the Notifier publish loop. Its name marks the sender
// side in the allocation attribution.
func benchSenderNotifier(nt *notifier.Notifier, payload []byte, n int) error {
	for range n {
		if err := nt.Publish(benchObject, benchID, benchCmd, payload); err != nil {
			return err
		}
	}
	return nil
}

func (r *notifierPubRig) dropped() uint64 {
	var d uint64
	for _, n := range r.receivers {
		d += n.Stats().Dropped
	}
	return d
}

func (r *notifierPubRig) close() { r.c.run() }

// --- scenario ---

// pubPair is the raw and the Notifier rig of one shape.
type pubPair struct {
	shape         pubShape
	raw, nt       pubRig
	rawS, ntS     *sink
	rawRes, ntRes []pubResult
}

func newPubPair(e *env, shape pubShape) (*pubPair, error) {
	p := &pubPair{shape: shape, rawS: &sink{}, ntS: &sink{}}
	raw, err := newRawPubRig(e, shape, p.rawS)
	if err != nil {
		return nil, err
	}
	nt, err := newNotifierPubRig(e, shape, p.ntS)
	if err != nil {
		raw.close()
		return nil, err
	}
	p.raw, p.nt = raw, nt
	return p, nil
}

func (p *pubPair) close() {
	p.raw.close()
	p.nt.close()
}

// round measures one variant and records the result.
func (p *pubPair) round(e *env, variant string, n int) error {
	rig, s, out := p.raw, p.rawS, &p.rawRes
	if variant == variantNotifier {
		rig, s, out = p.nt, p.ntS, &p.ntRes
	}
	gcQuiet()
	res, err := measurePub(rig, s, n, p.shape.perMsg(), e.cfg.timeout)
	if err != nil {
		return fmt.Errorf("%s: %w", variant, err)
	}
	e.logf("  %-8s n=%d got=%d/%d dropped=%d in %v: %s msgs/s%s", variant, n, res.got, res.want, res.dropped,
		res.elapsed.Round(time.Microsecond), fmtRate(res.rate(p.shape.perMsg())), timedOutNote(res.timedOut))
	*out = append(*out, res)
	return nil
}

func timedOutNote(t bool) string {
	if t {
		return " TIMED OUT"
	}
	return ""
}

// runPubScenario measures shape: a warm-up round each, then cfg.runs rounds
// each, alternating which variant goes first.
func runPubScenario(e *env, key, name string, shape pubShape, target float64) ([]Row, error) {
	p, err := newPubPair(e, shape)
	if err != nil {
		return nil, err
	}
	defer p.close()
	warm := max(e.cfg.n/10, 1000)
	for _, v := range []string{variantRaw, variantNotifier} {
		if err := p.round(e, v, warm); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	p.rawRes, p.ntRes = nil, nil
	for i := range e.cfg.runs {
		order := []string{variantRaw, variantNotifier}
		if i%2 == 1 {
			order = []string{variantNotifier, variantRaw}
		}
		for _, v := range order {
			if err := p.round(e, v, e.cfg.n); err != nil {
				return nil, err
			}
		}
	}
	per := shape.perMsg()
	var ntRates, rawRates, ratios []float64
	var ntDrops, rawDrops uint64
	timeouts := 0
	for i := range p.ntRes {
		nr, rr := p.ntRes[i].rate(per), p.rawRes[i].rate(per)
		ntRates, rawRates = append(ntRates, nr), append(rawRates, rr)
		ratios = append(ratios, safeDiv(nr, rr))
		ntDrops += p.ntRes[i].dropped
		rawDrops += p.rawRes[i].dropped
		if p.ntRes[i].timedOut || p.rawRes[i].timedOut {
			timeouts++
		}
	}
	sent := uint64(len(p.ntRes) * e.cfg.n * per)
	notes := fmt.Sprintf("runs %s; drops Notifier %d (%.0f %%), raw %d (%.0f %%)", fmtList(ratios, "%.2f"),
		ntDrops, 100*float64(ntDrops)/float64(sent), rawDrops, 100*float64(rawDrops)/float64(sent))
	if timeouts > 0 {
		notes += fmt.Sprintf("; %d rounds TIMED OUT", timeouts)
	}
	row := Row{
		Key: key, Name: name,
		NotifierVal: median(ntRates), RawVal: median(rawRates), RatioVal: median(ratios),
		Notes: notes, HasRaw: true,
		Target: target, TargetKind: atLeast,
	}
	row.Notifier, row.Raw = fmtRate(row.NotifierVal)+"/s", fmtRate(row.RawVal)+"/s"
	row.Ratio = fmt.Sprintf("%.2f", row.RatioVal)
	return []Row{row}, nil
}

func runPub1(e *env) ([]Row, error) {
	return runPubScenario(e, "pub1", "publish 1→1 (msgs/s at receiver)", pubShape{receivers: 1}, 0.70)
}

func runFanout(e *env) ([]Row, error) {
	return runPubScenario(e, "fanout", "fan-out 1→10 (msgs/s published, all 10 got all)", pubShape{receivers: 10}, 0.60)
}

func runSlice(e *env) ([]Row, error) {
	return runPubScenario(e, "slice", "slice 1→one-of-10 (msgs/s; raw: queue group)", pubShape{receivers: 10, slice: true}, 0.50)
}
