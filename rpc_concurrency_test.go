package notifier_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// --- §4.8: concurrency --------------------------------------------------------

// rpcParallel makes n concurrent RPCs and returns their outcomes.
func rpcParallel(ctx context.Context, a *notifier.Notifier, n int, object, cmd string) ([][]notifier.Result, []error) {
	res, errs := make([][]notifier.Result, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { res[i], errs[i] = a.RPC(ctx, object, int64(i), cmd, nil) })
	}
	wg.Wait()
	return res, errs
}

func rpcCheckAllOK(t *testing.T, res [][]notifier.Result, errs []error) {
	t.Helper()
	for i := range res {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if got := rpcStrings(t, res[i]); !slices.Equal(got, []string{"ok"}) {
			t.Fatalf("call %d: %q", i, got)
		}
	}
}

func TestRPCHandlersRunConcurrently(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL()) // default concurrency
	const calls = 8

	// Every handler waits until all 8 run at once: serialised handlers
	// would time out.
	var g rpcGauge
	var entered atomic.Int64
	all := make(chan struct{})
	must(t, b.RPCRegister("cc", notifier.Match{}, "barrier", &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
		g.enter()
		defer g.leave()
		if entered.Add(1) == calls {
			close(all)
		}
		select {
		case <-all:
			return "ok", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}))
	res, errs := rpcParallel(rpcCtx(t, rpcWait), a, calls, "cc", "barrier")
	rpcCheckAllOK(t, res, errs)
	if m := g.max.Load(); m != calls {
		t.Fatalf("at most %d handlers ran at once, want %d", m, calls)
	}

	// 8 concurrent calls to a 200 ms handler take well under 8 × 200 ms.
	must(t, b.RPCRegister("cc", notifier.Match{}, "work", &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
		select {
		case <-time.After(200 * time.Millisecond): // simulated work
			return "ok", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}))
	start := time.Now()
	res, errs = rpcParallel(rpcCtx(t, rpcWait), a, calls, "cc", "work")
	elapsed := time.Since(start)
	rpcCheckAllOK(t, res, errs)
	if elapsed >= time.Second {
		t.Fatalf("8 concurrent 200ms calls took %v, want well under 1.6s (< 1s)", elapsed)
	}
}

func TestRPCConcurrencyBound(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL(), notifier.WithConcurrency(1))
	var g rpcGauge
	must(t, b.RPCRegister("cb", notifier.Match{}, "q", &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
		g.enter()
		defer g.leave()
		select {
		case <-time.After(20 * time.Millisecond): // simulated work, long enough to overlap
			return "ok", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}))
	res, errs := rpcParallel(rpcCtx(t, 30*time.Second), a, 8, "cb", "q")
	rpcCheckAllOK(t, res, errs)
	if m := g.max.Load(); m != 1 {
		t.Fatalf("%d handlers ran at once with WithConcurrency(1)", m)
	}
}

func TestRPCSlowHandlerDoesNotDelayOthers(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	must(t, b.RPCRegister("sd", notifier.Match{}, "slow", rpcBlock("slow", entered, release)))
	must(t, b.RPCRegister("sd", notifier.Match{}, "fast", rpcConst("fast")))

	var wg sync.WaitGroup
	slowErrs := make([]error, 4)
	slowCtx := rpcCtx(t, 30*time.Second)
	for i := range 4 {
		wg.Go(func() { _, slowErrs[i] = a.RPC(slowCtx, "sd", int64(i), "slow", nil) })
	}
	for range 4 {
		rpcRecv(t, entered, rpcWait, "slow handler start")
	}
	// Four handlers are blocked; another registration still answers.
	res, err := a.RPC(rpcCtx(t, 2*time.Second), "sd", 1, "fast", nil)
	close(release)
	wg.Wait()
	if err != nil {
		t.Fatalf("fast RPC while slow handlers run: %v", err)
	}
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"fast"}) {
		t.Fatalf("fast RPC: %q", got)
	}
	for i, err := range slowErrs {
		if err != nil {
			t.Fatalf("slow call %d: %v", i, err)
		}
	}
}

// --- §4.9: responders that vanish -------------------------------------------

func TestRPCClosedResponderSkipped(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := connect(t, srv.URL())
	c := connect(t, srv.URL())
	must(t, b.RPCRegister("cs", notifier.Match{}, "q", rpcConst("b")))
	must(t, b.RPCSlice("cs", notifier.Match{}, "q", rpcConst("b-slice"), 1e6))
	must(t, c.RPCRegister("cs", notifier.Match{}, "q", rpcConst("c")))
	must(t, c.RPCSlice("cs", notifier.Match{}, "q", rpcConst("c-slice"), 1))
	must(t, b.RPCRegister("cs", notifier.Match{}, "only-b", rpcConst("b")))
	must(t, b.Close())

	start := time.Now()
	res, err := a.RPC(context.Background(), "cs", 1, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcSorted(t, res); !slices.Equal(got, []string{"c", "c-slice"}) {
		t.Fatalf("results %q, want C's full and slice only", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RPC took %v: it waited for the closed Notifier", d)
	}
	start = time.Now()
	if _, err := a.RPC(context.Background(), "cs", 1, "only-b", nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Fatalf("RPC to the closed Notifier only: %v, want ErrNoResponders", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RPC took %v: it waited for the closed Notifier", d)
	}
}

func TestRPCDeadConnectionSkipped(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b, nb := rpcNew(t, srv.URL(), notifier.WithHeartbeat(100*time.Millisecond))
	c := connect(t, srv.URL())
	must(t, b.RPCRegister("dc", notifier.Match{}, "q", rpcConst("b")))
	must(t, c.RPCRegister("dc", notifier.Match{}, "q", rpcConst("c")))
	must(t, b.RPCRegister("dc", notifier.Match{}, "only-b", rpcConst("b")))

	res, err := a.RPC(context.Background(), "dc", 1, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcSorted(t, res); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("before the crash: %q", got)
	}

	rpcKill(t, srv, nb) // no goodbye: the directory still lists B for a while
	start := time.Now()
	res, err = a.RPC(context.Background(), "dc", 1, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after the crash: %q, want [c]", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RPC took %v: NATS said no responders for B, yet it waited", d)
	}
	start = time.Now()
	if _, err := a.RPC(context.Background(), "dc", 1, "only-b", nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Fatalf("RPC to the dead Notifier only: %v, want ErrNoResponders", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RPC took %v: it waited for the dead Notifier", d)
	}
}

func TestRPCResponderDiesMidCall(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(time.Minute))
	b, nb := rpcNew(t, srv.URL(), notifier.WithHeartbeat(100*time.Millisecond))
	c := connect(t, srv.URL())
	entered := make(chan struct{}, 1)
	must(t, b.RPCRegister("mc", notifier.Match{}, "q", rpcBlock("b", entered, rpcRelease(t))))
	must(t, c.RPCRegister("mc", notifier.Match{}, "q", rpcConst("c")))

	type outcome struct {
		res []notifier.Result
		err error
		at  time.Duration
	}
	done := make(chan outcome, 1)
	const timeout = time.Second
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		res, err := a.RPC(ctx, "mc", 1, "q", nil)
		done <- outcome{res, err, time.Since(start)}
	}()
	rpcRecv(t, entered, rpcWait, "B's handler start")
	nb.Close() // B vanishes while its handler runs
	got := rpcRecv(t, done, rpcWait, "RPC end")
	// The directory notices B's closed connection within the deadline here
	// (its ring successor gets "no responders"), and a call in flight to a
	// Notifier known gone ends at once with what arrived; had the
	// drop come later, the call would end at its deadline with ErrTimeout.
	if got.err != nil {
		rpcCheckTimeout(t, got.err)
	}
	if v := rpcStrings(t, got.res); !slices.Equal(v, []string{"c"}) {
		t.Fatalf("results %q, want [c] without the vanished B", v)
	}
	if got.at > timeout+time.Second {
		t.Fatalf("RPC returned after %v, later than its %v deadline", got.at, timeout)
	}
}

func TestRPCSliceRedrawOnDeadResponder(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second), notifier.WithRandSource(rand.NewPCG(5, 6)))
	c := connect(t, srv.URL())
	must(t, c.RPCSlice("rd", notifier.Match{}, "q", rpcConst("c"), 1))

	// Each round a heavy slice on a fresh B is drawn first, then B's
	// connection dies without goodbye: the call must draw again, C.
	for round := range 3 {
		b, nb := rpcNew(t, srv.URL()) // default heartbeat: B stays listed for seconds
		must(t, b.RPCSlice("rd", notifier.Match{}, "q", rpcConst("b"), 1e6))
		res, err := a.RPC(rpcCtx(t, rpcWait), "rd", 1, "q", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := rpcStrings(t, res); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("round %d, before the crash: %q, want the heavy slice [b]", round, got)
		}
		rpcKill(t, srv, nb)
		start := time.Now()
		res, err = a.RPC(rpcCtx(t, rpcWait), "rd", 1, "q", nil)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got := rpcStrings(t, res); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("round %d: %q, want the remaining slice [c]", round, got)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("round %d: redraw took %v", round, d)
		}
	}
	for i := range 50 {
		res, err := a.RPC(rpcCtx(t, rpcWait), "rd", int64(i), "q", nil)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := rpcStrings(t, res); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("call %d: %q, want exactly one slice result [c]", i, got)
		}
	}
}

// TestRPCsBoundedInFlight: RPCs over many ids keeps at most
// MaxRPCsInFlight calls in flight, and still answers every id. Each handler
// holds its call until MaxRPCsInFlight run at once (or a short wait ends),
// so a caller without a bound would push the gauge past it.
func TestRPCsBoundedInFlight(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL(), notifier.WithConcurrency(4*notifier.MaxRPCsInFlight))
	const ids = 3 * notifier.MaxRPCsInFlight
	var g rpcGauge
	full := make(chan struct{})
	var once sync.Once
	must(t, b.RPCRegister("bound", notifier.Match{}, "q", &rpcFn{fn: func(ctx context.Context, id int64, _ notifier.Args) (any, error) {
		g.enter()
		defer g.leave()
		if g.cur.Load() >= notifier.MaxRPCsInFlight {
			once.Do(func() { close(full) })
		}
		select {
		case <-full:
		case <-time.After(20 * time.Millisecond): // not synchronisation: lets the waves overlap when the bound is never reached
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return id, nil
	}}))
	var want []int64
	for i := range int64(ids) {
		want = append(want, i)
	}
	out, err := a.RPCs(rpcCtx(t, 30*time.Second), "bound", want, "q", nil)
	must(t, err)
	for i, res := range out {
		var got int64
		if len(res) != 1 || res[0].Err != nil || res[0].Decode(&got) != nil || got != want[i] {
			t.Fatalf("id %d: results %+v", want[i], res)
		}
	}
	if m := g.max.Load(); m > notifier.MaxRPCsInFlight {
		t.Fatalf("%d calls of one RPCs ran at once, want at most %d", m, notifier.MaxRPCsInFlight)
	}
	if m := g.max.Load(); m < notifier.MaxRPCsInFlight/2 {
		t.Fatalf("only %d calls ran at once: RPCs is not concurrent", m)
	}
}
