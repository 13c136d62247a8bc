package notifier_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// --- §4.5: deadlines --------------------------------------------------------

func TestRPCDeadlineFromContext(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(time.Minute))
	b := connect(t, srv.URL())
	c := connect(t, srv.URL())

	handlerEnded := make(chan time.Time, 1)
	var handlerDeadline atomic.Pointer[time.Time]
	release := rpcRelease(t)
	slow := &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
		if dl, ok := ctx.Deadline(); ok {
			handlerDeadline.Store(&dl)
		}
		<-ctx.Done() // the handler's ctx ends with the caller's deadline
		handlerEnded <- time.Now()
		<-release // answer only after the caller gave up
		return "too late", nil
	}}
	must(t, b.RPCRegister("dl", notifier.Match{}, "q", rpcConst("fast")))
	must(t, c.RPCRegister("dl", notifier.Match{}, "q", slow))

	const timeout = 300 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := a.RPC(ctx, "dl", 1, "q", nil)
	elapsed := time.Since(start)
	rpcCheckTimeout(t, err)
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"fast"}) {
		t.Fatalf("results %q, want the one that arrived [fast]", got)
	}
	if elapsed < timeout-50*time.Millisecond || elapsed > 3*time.Second {
		t.Fatalf("RPC returned after %v, want about the ctx timeout %v (the default is 1m)", elapsed, timeout)
	}
	rpcRecv(t, handlerEnded, rpcWait, "end of the handler's ctx")
	callerDeadline, _ := ctx.Deadline()
	if dl := handlerDeadline.Load(); dl == nil || dl.After(callerDeadline.Add(time.Second)) {
		t.Fatalf("handler ctx deadline %v, want one near the caller's %v", dl, callerDeadline)
	}
}

func TestRPCDefaultTimeout(t *testing.T) {
	srv := testenv.Run(t)
	const timeout = 300 * time.Millisecond
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(timeout))
	b := connect(t, srv.URL())
	release := rpcRelease(t)
	must(t, b.RPCRegister("dt", notifier.Match{}, "q", rpcConst("fast")))
	must(t, b.RPCRegister("dt", notifier.Match{}, "q", rpcBlock("slow", nil, release)))

	// A ctx without deadline (cancellable or not) gets the default.
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ctx := range []context.Context{context.Background(), cctx} {
		start := time.Now()
		res, err := a.RPC(ctx, "dt", 1, "q", nil)
		elapsed := time.Since(start)
		rpcCheckTimeout(t, err)
		if got := rpcStrings(t, res); !slices.Equal(got, []string{"fast"}) {
			t.Fatalf("results %q, want [fast]", got)
		}
		if elapsed < timeout-50*time.Millisecond || elapsed > 3*time.Second {
			t.Fatalf("RPC returned after %v, want about WithRPCTimeout %v", elapsed, timeout)
		}
	}
}

func TestRPCLateReplyDropped(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	// Concurrency 1: the ping below runs only after the late reply was sent.
	c := connect(t, srv.URL(), notifier.WithConcurrency(1))

	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	slowDone := make(chan struct{})
	slow := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) {
		defer close(slowDone)
		<-release // ignores its ctx: replies after the caller gave up
		return "late", nil
	}}
	// Three early results: the returned slice then has spare capacity a
	// late append could write into.
	for range 3 {
		must(t, b.RPCRegister("late", notifier.Match{}, "q", rpcConst("early")))
	}
	must(t, c.RPCRegister("late", notifier.Match{}, "q", slow))
	must(t, c.RPCRegister("late", notifier.Match{}, "ping", rpcConst("pong")))

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := a.RPC(ctx, "late", 1, "q", nil)
	rpcCheckTimeout(t, err)
	type snap struct {
		raw string
		err error
	}
	snapshot := func() []snap {
		var s []snap
		for _, r := range res[:cap(res)] {
			s = append(s, snap{string(r.Value.Raw()), r.Err})
		}
		return s
	}
	before := snapshot()
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"early", "early", "early"}) {
		t.Fatalf("results %q, want [early early early]", got)
	}

	once.Do(func() { close(release) })
	rpcRecv(t, slowDone, rpcWait, "slow handler end")
	// The late reply left C before the pong, and replies reach the caller in
	// order: once the pong is back, the late reply has been handled.
	pong, err := a.RPC(rpcCtx(t, rpcWait), "late", 1, "ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcStrings(t, pong); !slices.Equal(got, []string{"pong"}) {
		t.Fatalf("ping: %q", got)
	}
	if after := snapshot(); !slices.Equal(before, after) || len(res) != 3 {
		t.Fatalf("returned slice changed after a late reply: %v -> %v", before, after)
	}
}

// --- §4.6: RPCs ---------------------------------------------------------------

func TestRPCsAligned(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(time.Minute))
	b := connect(t, srv.URL())

	var perID [8]atomic.Int64
	times10 := &rpcFn{fn: func(_ context.Context, id int64, _ notifier.Args) (any, error) {
		perID[id].Add(1)
		return id * 10, nil
	}}
	for _, id := range []int64{1, 2, 5} {
		must(t, b.RPCRegister("rs", notifier.Exact(id), "q", times10))
	}
	// Ids 3 and 5 also have a responder that never answers in time.
	hang := rpcBlock(int64(-1), nil, rpcRelease(t))
	must(t, b.RPCRegister("rs", notifier.Exact(3), "q", hang))
	must(t, b.RPCRegister("rs", notifier.Exact(5), "q", hang))
	// Id 4 has nobody.

	decode := func(res []notifier.Result) []int64 {
		if res == nil {
			return nil
		}
		out := []int64{}
		for _, r := range res {
			var v int64
			if err := r.Decode(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}

	// Without a timeout: aligned, duplicates each called, nil for id 4.
	out, err := a.RPCs(rpcCtx(t, rpcWait), "rs", []int64{2, 1, 4, 1}, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]int64{{20}, {10}, nil, {10}}
	if len(out) != len(want) {
		t.Fatalf("len %d, want %d", len(out), len(want))
	}
	for i := range want {
		if got := decode(out[i]); !slices.Equal(got, want[i]) || (want[i] == nil) != (out[i] == nil) {
			t.Fatalf("out[%d] = %v, want %v", i, got, want[i])
		}
	}
	if n := perID[1].Load(); n != 2 {
		t.Fatalf("id 1 called %d times, want 2 (once per duplicate)", n)
	}

	// With a timeout: what arrived per id, nil where nothing did.
	ids := []int64{1, 2, 1, 3, 4, 5}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	out, err = a.RPCs(ctx, "rs", ids, "q", nil)
	rpcCheckTimeout(t, err)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("RPCs returned after %v, want about 400ms", d)
	}
	want = [][]int64{{10}, {20}, {10}, nil, nil, {50}}
	if len(out) != len(want) {
		t.Fatalf("len %d, want %d", len(out), len(want))
	}
	for i := range want {
		if got := decode(out[i]); !slices.Equal(got, want[i]) || (want[i] == nil) != (out[i] == nil) {
			t.Fatalf("id %d (index %d): %v, want %v", ids[i], i, got, want[i])
		}
	}
	if n := perID[1].Load(); n != 4 {
		t.Fatalf("id 1 called %d times in all, want 4", n)
	}
}

func TestRPCsEmptyAndNoResponders(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	ctx := rpcCtx(t, rpcWait)
	for _, ids := range [][]int64{nil, {}} {
		out, err := a.RPCs(ctx, "none", ids, "q", nil)
		if err != nil || out == nil || len(out) != 0 {
			t.Fatalf("RPCs(%v) = %v (nil: %v), %v; want an empty non-nil result and nil", ids, out, out == nil, err)
		}
	}
	// Documented: when no id had any responder, ErrNoResponders, at once.
	start := time.Now()
	out, err := a.RPCs(context.Background(), "none", []int64{1, 2}, "q", nil)
	if !errors.Is(err, notifier.ErrNoResponders) || len(out) != 2 || out[0] != nil || out[1] != nil {
		t.Fatalf("RPCs = %v, %v; want [nil nil] and ErrNoResponders", out, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RPCs without responders took %v", d)
	}
}

// --- §4.7: RPCCall ------------------------------------------------------------

func TestRPCCallAsync(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(30*time.Second))
	b := connect(t, srv.URL())
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	must(t, b.RPCRegister("ac", notifier.Match{}, "q", rpcBlock("done", entered, release)))
	must(t, b.RPCRegister("ac", notifier.Match{}, "ping", rpcConst("pong")))

	rec := newRPCRecorder()
	returned := make(chan error, 1)
	go func() { returned <- a.RPCCall("ac", 7, "q", "x", rec) }()
	// RPCCall returns while the handler is still blocked.
	if err := rpcRecv(t, returned, 2*time.Second, "return of RPCCall while the handler blocks"); err != nil {
		t.Fatal(err)
	}
	rpcRecv(t, entered, rpcWait, "handler start")
	if n := rec.calls.Load(); n != 0 {
		t.Fatalf("RPCResponse called %d times before the handler answered", n)
	}
	once.Do(func() { close(release) })

	got := rpcRecv(t, rec.got, rpcWait, "RPCResponse")
	if got.err != nil || got.object != "ac" || got.id != 7 || got.cmd != "q" {
		t.Fatalf("RPCResponse(%q, %d, %q, _, %v)", got.object, got.id, got.cmd, got.err)
	}
	if v := rpcStrings(t, got.results); !slices.Equal(v, []string{"done"}) {
		t.Fatalf("results %q, want [done]", v)
	}
	// Exactly once: still one call after a further round trip.
	if _, err := a.RPC(rpcCtx(t, rpcWait), "ac", 1, "ping", nil); err != nil {
		t.Fatal(err)
	}
	if n := rec.calls.Load(); n != 1 {
		t.Fatalf("RPCResponse called %d times, want exactly once", n)
	}
}

func TestRPCCallOnAnotherGoroutine(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := connect(t, srv.URL())
	must(t, b.RPCRegister("og", notifier.Match{}, "ping", rpcConst("pong")))

	// Nobody registered, the case most tempting to answer inline: RPCResponse
	// blocks until the caller's RPCCall has returned, so it cannot run on the
	// caller's goroutine.
	rec := newRPCRecorder()
	rec.gate = make(chan struct{})
	returned := make(chan error, 1)
	start := time.Now()
	go func() { returned <- a.RPCCall("og", 1, "nobody", nil, rec) }()
	err := rpcRecv(t, returned, 2*time.Second, "return of RPCCall (RPCResponse ran on the caller's goroutine?)")
	close(rec.gate)
	if err != nil {
		t.Fatal(err)
	}
	got := rpcRecv(t, rec.got, rpcWait, "RPCResponse")
	if !errors.Is(got.err, notifier.ErrNoResponders) || got.results == nil || len(got.results) != 0 {
		t.Fatalf("RPCResponse(%v, %v); want empty non-nil results and ErrNoResponders", got.results, got.err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RPCResponse after %v, want at once (the timeout is 10s)", d)
	}
	if _, err := a.RPC(rpcCtx(t, rpcWait), "og", 1, "ping", nil); err != nil {
		t.Fatal(err)
	}
	if n := rec.calls.Load(); n != 1 {
		t.Fatalf("RPCResponse called %d times, want exactly once", n)
	}
}

func TestRPCCallTimeout(t *testing.T) {
	srv := testenv.Run(t)
	const timeout = 300 * time.Millisecond
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(timeout))
	b := connect(t, srv.URL())
	must(t, b.RPCRegister("ct", notifier.Match{}, "q", rpcConst("fast")))
	must(t, b.RPCRegister("ct", notifier.Match{}, "q", rpcBlock("slow", nil, rpcRelease(t))))
	must(t, b.RPCRegister("ct", notifier.Match{}, "ping", rpcConst("pong")))

	rec := newRPCRecorder()
	start := time.Now()
	must(t, a.RPCCall("ct", 1, "q", nil, rec))
	got := rpcRecv(t, rec.got, rpcWait, "RPCResponse")
	elapsed := time.Since(start)
	rpcCheckTimeout(t, got.err)
	if v := rpcStrings(t, got.results); !slices.Equal(v, []string{"fast"}) {
		t.Fatalf("results %q, want the partial [fast]", v)
	}
	if elapsed < timeout-50*time.Millisecond || elapsed > 3*time.Second {
		t.Fatalf("RPCResponse after %v, want about WithRPCTimeout %v", elapsed, timeout)
	}
	// A further round trip: a second response would have come by now.
	if _, err := a.RPC(rpcCtx(t, rpcWait), "ct", 1, "ping", nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if n := rec.calls.Load(); n != 1 {
		t.Fatalf("RPCResponse called %d times, want exactly once", n)
	}
}

func TestRPCCallBadInput(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	must(t, b.RPCRegister("bi", notifier.Match{}, "q", rpcConst("ok")))

	rec := newRPCRecorder()
	for _, tc := range []struct {
		name        string
		object, cmd string
		args        any
		src         notifier.ResultHandler
		want        error
	}{
		{"empty object", "", "q", nil, rec, notifier.ErrInvalidName},
		{"dotted object", "b.i", "q", nil, rec, notifier.ErrInvalidName},
		{"wildcard cmd", "bi", "*", nil, rec, notifier.ErrInvalidName},
		{"space in cmd", "bi", "a b", nil, rec, notifier.ErrInvalidName},
		{"nil source", "bi", "q", nil, nil, notifier.ErrInvalidDestination},
		{"typed nil source", "bi", "q", nil, (*rpcRecorder)(nil), notifier.ErrInvalidDestination},
		{"unencodable args", "bi", "q", make(chan int), rec, notifier.ErrEncode},
	} {
		if err := a.RPCCall(tc.object, 1, tc.cmd, tc.args, tc.src); !errors.Is(err, tc.want) {
			t.Errorf("%s: RPCCall err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := a.RPC(rpcCtx(t, rpcWait), "bi", 1, "q", nil); err != nil {
		t.Fatal(err)
	}
	if n := rec.calls.Load(); n != 0 {
		t.Fatalf("RPCResponse called %d times for rejected calls", n)
	}
}

func TestRPCAfterClose(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	r := rpcConst("x")
	must(t, a.RPCRegister("cl", notifier.Match{}, "q", r))
	must(t, a.Close())
	ctx := rpcCtx(t, rpcWait)
	rec := newRPCRecorder()

	_, err := a.RPC(ctx, "cl", 1, "q", nil)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, notifier.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	check("RPC", err)
	_, err = a.RPCs(ctx, "cl", []int64{1}, "q", nil)
	check("RPCs", err)
	check("RPCCall", a.RPCCall("cl", 1, "q", nil, rec))
	check("RPCRegister", a.RPCRegister("cl", notifier.Match{}, "q", rpcConst("y")))
	check("RPCSlice", a.RPCSlice("cl", notifier.Match{}, "q", rpcConst("y"), 1))
	check("RPCUnregister", a.RPCUnregister("cl", notifier.Match{}, "q", r))
	check("RPCUnregisterAll", a.RPCUnregisterAll(r))
	if n := rec.calls.Load(); n != 0 {
		t.Errorf("RPCResponse called %d times after a rejected RPCCall", n)
	}
}

func TestRPCInvalidInput(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	ctx := rpcCtx(t, rpcWait)
	r := rpcConst("x")

	long := strings.Repeat("x", 128)
	for _, name := range []string{"", "a.b", "a*", ">", "a b", "tab\t", "nl\n", "nul\x00", long + "x"} {
		if err := a.RPCRegister(name, notifier.Match{}, "q", r); !errors.Is(err, notifier.ErrInvalidName) {
			t.Errorf("RPCRegister(object %q): %v, want ErrInvalidName", name, err)
		}
		if err := a.RPCSlice("o", notifier.Match{}, name, r, 1); !errors.Is(err, notifier.ErrInvalidName) {
			t.Errorf("RPCSlice(cmd %q): %v, want ErrInvalidName", name, err)
		}
		if _, err := a.RPC(ctx, name, 1, "q", nil); !errors.Is(err, notifier.ErrInvalidName) {
			t.Errorf("RPC(object %q): %v, want ErrInvalidName", name, err)
		}
		if _, err := a.RPCs(ctx, "o", []int64{1}, name, nil); !errors.Is(err, notifier.ErrInvalidName) {
			t.Errorf("RPCs(cmd %q): %v, want ErrInvalidName", name, err)
		}
	}
	for _, dest := range []notifier.Responder{nil, (*rpcFn)(nil), rpcNonComparable{}} {
		if err := a.RPCRegister("o", notifier.Match{}, "q", dest); !errors.Is(err, notifier.ErrInvalidDestination) {
			t.Errorf("RPCRegister(%T): %v, want ErrInvalidDestination", dest, err)
		}
	}
	for _, w := range []float64{-1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := a.RPCSlice("o", notifier.Match{}, "q", r, w); !errors.Is(err, notifier.ErrInvalidWeight) {
			t.Errorf("RPCSlice(weight %v): %v, want ErrInvalidWeight", w, err)
		}
	}
	if _, err := a.RPC(ctx, "o", 1, "q", make(chan int)); !errors.Is(err, notifier.ErrEncode) {
		t.Errorf("RPC(unencodable): %v, want ErrEncode", err)
	}
	// Nothing of the above was registered; a 128-byte name is fine.
	if _, err := a.RPC(ctx, "o", 1, "q", nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Errorf("after rejected registrations: %v, want ErrNoResponders", err)
	}
	must(t, a.RPCRegister(long, notifier.Match{}, long, r))
	if res, err := a.RPC(ctx, long, 1, long, nil); err != nil || len(res) != 1 {
		t.Errorf("128-byte names: %v, %v", res, err)
	}
}
