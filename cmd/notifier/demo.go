package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/internal/redact"
	"github.com/natsnotifier/notifier/testenv"
)

const demoDoc = `Shows the Notifier's semantics in a few seconds, on an embedded NATS server
(or the one at --url). Two Notifiers, A and B, join the bus. They register for
object "sensor", cmd "reading": full registrations (Subscribe) with different
id patterns, and weighted slices (Slice) of weight 1, 3 and 0 (standby). A
publishes --n notifications over ids 1..8, and the demo prints what each
registration received:
  - every full registration receives every publish its pattern matches;
  - exactly one slice receives each publish, drawn in proportion to weight;
  - a slice of weight 0 is standby: it receives nothing while others exist.
Then the same for RPC: RPC returns the answers of every full RPC registration
plus one RPC slice, a failing responder does not hide the other answers, nobody
registered means ErrNoResponders at once, and RPCCall delivers the same answers
to a ResultHandler.

The demo checks what it prints and exits 1 if the bus broke a rule. Its draws
use a fixed --seed, so the numbers repeat from run to run. With --url, use a bus
where nothing else registers object "sensor": it would receive a share.
`

// Demo constants: what A publishes to.
const (
	demoObject = "sensor"
	demoCmd    = "reading"
	demoIDs    = 8 // A publishes to ids 1..demoIDs in turn
)

// demoWait bounds each wait of the demo for deliveries and answers.
const demoWait = 10 * time.Second

func runDemo(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := newFlags("demo", "[flags]", demoDoc)
	conn := addConnFlagsFor(f, "use the NATS server at these `URLs` instead of an embedded one")
	count := f.Int("n", 1000, "`number` of notifications A publishes")
	seed := f.Uint64("seed", 1, "`seed` of the weighted draws (0: a random one)")
	if code, ok := f.parse(args, stdout, stderr); !ok {
		return code
	}
	if *count < 1 {
		return f.fail(stderr, "--n %d: want at least 1", *count)
	}
	embedded := !conn.urlSet() && !f.isSet("context") // a selected context alone does not count
	if embedded {
		if name := conn.joinFlagsSet(); name != "" {
			return f.fail(stderr, "--%s is for a NATS server of yours: give it with -s/--server/--url or --context", name)
		}
		if err := conn.checkPrefix(); err != nil {
			return f.fail(stderr, "%v", err)
		}
	} else if err := conn.check(); err != nil {
		return f.fail(stderr, "%v", err)
	}
	where := "at " + redact.URLs(conn.urls)
	if embedded {
		srv, err := testenv.Start()
		if err != nil {
			fmt.Fprintf(stderr, "notifier demo: %v\n", err)
			return exitFail
		}
		defer srv.Shutdown()
		conn.urls = srv.URL()
		where = "embedded at " + srv.URL()
	}
	if *seed == 0 {
		*seed = rand.Uint64()
	}

	log := newLogger(stderr, slog.LevelWarn)
	// Room for every notification: the demo shows routing, not back-pressure.
	queue := notifier.WithQueueSize(max(notifier.DefaultQueueSize, *count))
	a, err := conn.connect("demo", stderr, log.With("notifier", "A"), queue,
		notifier.WithRandSource(rand.NewPCG(*seed, 1)))
	if err != nil {
		return exitFail
	}
	defer closeNotifier("demo", a, stderr)
	b, err := conn.connect("demo", stderr, log.With("notifier", "B"), queue,
		notifier.WithRandSource(rand.NewPCG(*seed, 2)))
	if err != nil {
		return exitFail
	}
	defer closeNotifier("demo", b, stderr)

	d := &demo{ctx: ctx, w: stdout, a: a, b: b}
	d.printf("Notifier demo: NATS %s, prefix %q.\n", where, conn.prefix)
	d.printf("Two Notifiers, A and B, are on the bus. Seed %d.\n", *seed)
	if err := d.notifications(*count); err != nil {
		fmt.Fprintf(stderr, "notifier demo: %v\n", err)
		return exitFail
	}
	if err := d.rpcs(); err != nil {
		fmt.Fprintf(stderr, "notifier demo: %v\n", err)
		return exitFail
	}
	if d.failed > 0 {
		fmt.Fprintf(stderr, "notifier demo: %d check(s) FAILED (marked above)\n", d.failed)
		return exitFail
	}
	d.printf("\nEvery check passed.\n")
	return exitOK
}

// demo runs the demo's steps and prints them.
type demo struct {
	ctx    context.Context
	w      io.Writer
	a, b   *notifier.Notifier
	failed int // checks that failed
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.w, format, args...) }

// check prints ok or FAILED for a rule.
func (d *demo) check(ok bool) string {
	if ok {
		return "ok"
	}
	d.failed++
	return "FAILED"
}

// counter is a Subscriber that counts.
type counter struct{ n atomic.Int64 }

func (c *counter) Notify(string, int64, string, notifier.Args) { c.n.Add(1) }

var _ notifier.Subscriber = (*counter)(nil)

// demoReg is one registration of the notification part.
type demoReg struct {
	on      string // "A" or "B"
	slice   bool
	pattern notifier.Match
	weight  float64
	ids     string // the pattern, for people
	call    string // the Go call
	c       counter
}

func (r *demoReg) name() string {
	if r.slice {
		return fmt.Sprintf("%s slice, weight %g", r.on, r.weight)
	}
	return fmt.Sprintf("%s full, %s", r.on, r.ids)
}

// notifications registers, publishes count notifications from A, and prints
// and checks what arrived.
func (d *demo) notifications(count int) error {
	regs := []*demoReg{
		{on: "A", pattern: notifier.Exact(3), ids: "id 3", call: "Subscribe(..., Exact(3), ...)"},
		{on: "B", pattern: notifier.Match{}, ids: "every id", call: "Subscribe(..., Match{}, ...)"},
		{on: "B", pattern: notifier.Match{Mask: 1, Value: 0}, ids: "even ids", call: "Subscribe(..., Match{Mask: 1, Value: 0}, ...)"},
		{on: "A", slice: true, weight: 1, ids: "every id", call: "Slice(..., Match{}, ..., 1)"},
		{on: "B", slice: true, weight: 3, ids: "every id", call: "Slice(..., Match{}, ..., 3)"},
		{on: "A", slice: true, weight: 0, ids: "every id", call: "Slice(..., Match{}, ..., 0)  standby"},
	}
	d.printf("\n1. Registrations for object %q, cmd %q\n", demoObject, demoCmd)
	for _, r := range regs {
		n := d.a
		if r.on == "B" {
			n = d.b
		}
		var err error
		if r.slice {
			err = n.Slice(demoObject, r.pattern, demoCmd, &r.c, r.weight)
		} else {
			err = n.Subscribe(demoObject, r.pattern, demoCmd, &r.c)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", r.name(), err)
		}
		d.printf("   %-22s %s.%s\n", r.name(), r.on, r.call)
	}

	d.printf("\n2. A publishes %d notifications to ids 1..%d in turn\n", count, demoIDs)
	start := time.Now()
	for i := range count {
		if err := d.a.Publish(demoObject, int64(i%demoIDs+1), demoCmd, i); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	// What each registration should get: a full one, every matching publish;
	// the slices, one delivery per publish in all.
	want := make([]int64, len(regs))
	var wantFull, totalWeight float64
	for i, r := range regs {
		if r.slice {
			totalWeight += r.weight
			continue
		}
		for j := range count {
			if r.pattern.Matches(int64(j%demoIDs + 1)) {
				want[i]++
			}
		}
		wantFull += float64(want[i])
	}
	arrived := func() (full, sliced int64) {
		for _, r := range regs {
			if r.slice {
				sliced += r.c.n.Load()
			} else {
				full += r.c.n.Load()
			}
		}
		return full, sliced
	}
	waitErr := d.wait(func() bool {
		full, sliced := arrived()
		return full >= int64(wantFull) && sliced >= int64(count)
	})
	elapsed := time.Since(start)

	d.printf("\n3. What each registration received\n")
	d.printf("   %-22s %8s  %-8s %s\n", "registration", "received", "expected", "rule")
	for i, r := range regs {
		got := r.c.n.Load()
		switch {
		case !r.slice:
			d.printf("   %-22s %8d  %-8d every publish to %s: %s\n", r.name(), got, want[i], r.ids, d.check(got == want[i]))
		case r.weight == 0:
			d.printf("   %-22s %8d  %-8d standby while a weighted slice matches: %s\n", r.name(), got, 0, d.check(got == 0))
		default:
			// Binomial: mean n·p, tolerance 6 standard deviations.
			p := r.weight / totalWeight
			mean := float64(count) * p
			tol := 6 * math.Sqrt(float64(count)*p*(1-p))
			d.printf("   %-22s %8d  ~%-7.0f %.1f%% of the slices, weight share %.1f%%: %s\n", r.name(), got, mean,
				100*float64(got)/float64(count), 100*p, d.check(math.Abs(float64(got)-mean) <= tol+0.5))
		}
	}
	_, sliced := arrived()
	d.printf("   %-22s %8d  %-8d exactly one slice per publish: %s\n", "all slices", sliced, count, d.check(sliced == int64(count)))
	if waitErr != nil {
		return fmt.Errorf("deliveries incomplete after %v: %w", demoWait, waitErr)
	}
	stats := d.b.Stats()
	d.printf("   (delivered in %v; B's Stats: %d delivered, %d dropped)\n", elapsed.Round(time.Millisecond), stats.Delivered, stats.Dropped)
	return nil
}

// wait polls cond until it holds, demoWait passes or the demo is interrupted.
func (d *demo) wait(cond func() bool) error {
	ctx, cancel := context.WithTimeout(d.ctx, demoWait)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// sortedLines renders results as JSON lines, sorted: they arrive in any order.
func sortedLines(results []notifier.Result) []string {
	lines := make([]string, 0, len(results))
	for _, r := range results {
		b, err := resultJSON(r)
		if err != nil {
			b = []byte(err.Error())
		}
		lines = append(lines, string(b))
	}
	slices.Sort(lines)
	return lines
}
