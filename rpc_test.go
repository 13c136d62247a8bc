package notifier_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// --- §4.1, §4.2: who is reached, what comes back --------------------------

func TestRPCReachesEveryFullAndOneWeightedSlice(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRandSource(rand.NewPCG(1, 2)))
	b := connect(t, srv.URL())
	c := connect(t, srv.URL())

	const id = 5 // odd
	odd := notifier.Match{Mask: 1, Value: 1}
	fullA, fullB, fullC := rpcConst("full-a"), rpcConst("full-b"), rpcConst("full-c")
	sliceB, sliceC := rpcConst("slice-b"), rpcConst("slice-c")
	other := rpcConst("other")
	must(t, a.RPCRegister("svc", notifier.Exact(id), "get", fullA)) // the caller's own
	must(t, b.RPCRegister("svc", notifier.Match{}, "get", fullB))
	must(t, c.RPCRegister("svc", odd, "get", fullC))
	// Overlapping slices with different patterns on different Notifiers
	// compete in one draw.
	must(t, b.RPCSlice("svc", notifier.Match{}, "get", sliceB, 1))
	must(t, c.RPCSlice("svc", odd, "get", sliceC, 3))
	// Never matching: other id, other cmd, other object.
	must(t, c.RPCRegister("svc", notifier.Exact(id+1), "get", other))
	must(t, b.RPCSlice("svc", notifier.Exact(id+1), "get", other, 100))
	must(t, b.RPCRegister("svc", notifier.Match{}, "put", other))
	must(t, c.RPCSlice("svc2", notifier.Match{}, "get", other, 100))

	ctx := rpcCtx(t, 60*time.Second)
	const calls = 600
	sliceCount := map[string]int{}
	for i := range calls {
		res, err := a.RPC(ctx, "svc", id, "get", i)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		got := rpcSorted(t, res)
		if len(got) != 4 || !slices.Equal(got[:3], []string{"full-a", "full-b", "full-c"}) || !strings.HasPrefix(got[3], "slice-") {
			t.Fatalf("call %d: results %q, want full-a, full-b, full-c and one slice", i, got)
		}
		sliceCount[got[3]]++
	}
	for _, r := range []*rpcFn{fullA, fullB, fullC} {
		if n := r.calls.Load(); n != calls {
			t.Errorf("a full registration answered %d calls, want %d", n, calls)
		}
	}
	if n := sliceB.calls.Load() + sliceC.calls.Load(); n != calls {
		t.Errorf("slices answered %d calls, want exactly one per call (%d)", n, calls)
	}
	if n := other.calls.Load(); n != 0 {
		t.Errorf("non-matching registrations were called %d times", n)
	}
	p := 1.0 / 4 // weight 1 against 3
	want, tol := calls*p, rpcTolerance(calls, p)
	if got := float64(sliceCount["slice-b"]); math.Abs(got-want) > tol {
		t.Errorf("slice-b drawn %v times of %d, want %v ± %.0f (weights 1:3)", got, calls, want, tol)
	}
}

func TestRPCSliceStandby(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRandSource(rand.NewPCG(3, 4)))
	b := connect(t, srv.URL())
	c := connect(t, srv.URL())
	ctx := rpcCtx(t, 60*time.Second)

	// Weight 0 is standby while a weighted slice matches.
	must(t, b.RPCSlice("sb", notifier.Match{}, "q", rpcConst("b"), 0))
	must(t, c.RPCSlice("sb", notifier.Match{}, "q", rpcConst("c"), 1))
	for i := range 100 {
		res, err := a.RPC(ctx, "sb", 1, "q", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := rpcStrings(t, res); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("call %d: %q, want only the weighted slice c", i, got)
		}
	}

	// Only standby slices: one of them, uniformly.
	must(t, b.RPCSlice("sb0", notifier.Match{}, "q", rpcConst("b"), 0))
	must(t, c.RPCSlice("sb0", notifier.Match{}, "q", rpcConst("c"), 0))
	const calls = 300
	nb := 0
	for i := range calls {
		res, err := a.RPC(ctx, "sb0", 1, "q", nil)
		if err != nil {
			t.Fatal(err)
		}
		got := rpcStrings(t, res)
		if len(got) != 1 {
			t.Fatalf("call %d: %q, want exactly one standby slice", i, got)
		}
		if got[0] == "b" {
			nb++
		}
	}
	if want, tol := calls*0.5, rpcTolerance(calls, 0.5); math.Abs(float64(nb)-want) > tol {
		t.Errorf("standby b drawn %d of %d times, want %v ± %.0f", nb, calls, want, tol)
	}
}

// TestRPCResultsInArrivalOrder: results come in the order the replies
// arrive, not the order of the registrations. Both responders are
// registrations of one Notifier, b, so that their replies leave over one
// connection: the server forwards one connection's messages in order. (With
// the responders on two Notifiers the test raced: the server hands a reply
// to each subscriber in turn, and under load the spy had the fast reply,
// and the slow one was sent and queued to the caller, before the server
// queued the fast one to the caller.)
func TestRPCResultsInArrivalOrder(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())

	// A spy sees each reply on its way to the caller's inbox. The slow
	// handler returns only after the spy saw the fast reply (recognised by
	// its msgpack-encoded value), so b published the fast reply before the
	// slow one.
	spy := testenv.Connect(t, srv.URL())
	type gate struct {
		marker []byte // the encoded fast value of this call
		ch     chan struct{}
		once   sync.Once
	}
	var cur atomic.Pointer[gate]
	_, err := spy.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if g := cur.Load(); g != nil && bytes.Contains(m.Data, g.marker) {
			g.once.Do(func() { close(g.ch) })
		}
	})
	must(t, err)
	must(t, spy.Flush())

	slow := &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
		select {
		case <-cur.Load().ch:
			return "slow", nil
		case <-ctx.Done():
			return nil, errors.New("the spy never saw the fast reply")
		}
	}}
	fast := &rpcFn{fn: func(_ context.Context, id int64, _ notifier.Args) (any, error) {
		return fmt.Sprintf("fast-%d", id), nil
	}}
	must(t, b.RPCRegister("order", notifier.Match{}, "q", slow)) // registered first
	must(t, b.RPCRegister("order", notifier.Match{}, "q", fast))

	for i := range 5 {
		want := fmt.Sprintf("fast-%d", i)
		marker, err := msgpack.Marshal(want)
		must(t, err)
		cur.Store(&gate{marker: marker, ch: make(chan struct{})})
		res, err := a.RPC(rpcCtx(t, rpcWait), "order", int64(i), "q", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := rpcStrings(t, res); !slices.Equal(got, []string{want, "slow"}) {
			t.Fatalf("call %d: results %q, want arrival order [%s slow]", i, got, want)
		}
	}
}

func TestRPCNilResultContributesNothing(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	silent := rpcConst(nil) // returns (nil, nil)
	must(t, b.RPCRegister("nil", notifier.Match{}, "q", silent))
	must(t, a.RPCRegister("nil", notifier.Match{}, "q", rpcConst("v")))
	must(t, b.RPCRegister("nil", notifier.Match{}, "quiet", silent))

	res, err := a.RPC(ctx, "nil", 1, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("results %q, want only [v]", got)
	}

	// Only a silent responder: no results, and no error (it was registered).
	res, err = a.RPC(ctx, "nil", 1, "quiet", nil)
	if err != nil || len(res) != 0 {
		t.Fatalf("RPC = %v, %v; want no results and nil", res, err)
	}
	if n := silent.calls.Load(); n != 2 {
		t.Fatalf("silent responder called %d times, want 2", n)
	}
}

func TestRPCRegistrationPerPatternAndIdempotent(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	r := rpcConst("r")
	must(t, b.RPCRegister("pp", notifier.Exact(3), "q", r))
	must(t, b.RPCRegister("pp", notifier.Match{}, "q", r))
	must(t, b.RPCRegister("pp", notifier.Exact(3), "q", r)) // again: no-op

	res, err := a.RPC(ctx, "pp", 3, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"r", "r"}) {
		t.Fatalf("id 3: %q, want one result per matching registration [r r]", got)
	}
	res, err = a.RPC(ctx, "pp", 4, "q", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("id 4: %q, want [r]", got)
	}
}

func TestRPCSeparateFromNotifications(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := connect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	// Notification registrations never answer RPCs.
	sub, slice := &rpcBoth{}, &rpcBoth{}
	must(t, b.Subscribe("sep", notifier.Match{}, "x", sub))
	must(t, b.Slice("sep", notifier.Match{}, "x", slice, 1))
	if _, err := a.RPC(ctx, "sep", 1, "x", nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Fatalf("RPC to notification registrations: err = %v, want ErrNoResponders", err)
	}
	if n := sub.called.Load() + slice.called.Load(); n != 0 {
		t.Fatalf("notification registrations answered %d RPCs", n)
	}

	// RPC registrations never get publishes.
	resp, respSlice := &rpcBoth{}, &rpcBoth{}
	must(t, b.RPCRegister("sep", notifier.Match{}, "y", resp))
	must(t, b.RPCSlice("sep", notifier.Match{}, "y", respSlice, 1))
	witness := &rpcSub{ch: make(chan string, 32)}
	must(t, b.Subscribe("sep", notifier.Match{}, "y", witness))
	const pubs = 20
	for i := range pubs {
		must(t, a.Publish("sep", int64(i), "y", "n"))
	}
	for range pubs {
		rpcRecv(t, witness.ch, rpcWait, "notification")
	}
	if n := resp.notified.Load() + respSlice.notified.Load(); n != 0 {
		t.Fatalf("RPC registrations got %d notifications", n)
	}
	res, err := a.RPC(ctx, "sep", 1, "y", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"both", "both"}) {
		t.Fatalf("RPC results %q, want the full and the slice RPC registration", got)
	}
}

// --- §4.3: nobody registered -------------------------------------------------

func TestRPCNoRespondersAtOnce(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := connect(t, srv.URL())
	// Registrations that do not match the call.
	must(t, b.RPCRegister("nr", notifier.Exact(1), "q", rpcConst("x")))
	must(t, b.RPCSlice("nr", notifier.Exact(1), "q", rpcConst("x"), 1))
	must(t, b.RPCRegister("nr", notifier.Match{}, "other", rpcConst("x")))
	must(t, b.Subscribe("nr", notifier.Match{}, "q", &rpcSub{ch: make(chan string, 1)}))

	for _, tc := range []struct {
		object string
		id     int64
	}{{"nr", 2}, {"empty", 1}} {
		start := time.Now()
		res, err := a.RPC(context.Background(), tc.object, tc.id, "q", nil)
		if !errors.Is(err, notifier.ErrNoResponders) || len(res) != 0 {
			t.Fatalf("RPC %s/%d = %v, %v; want no results and ErrNoResponders", tc.object, tc.id, res, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("ErrNoResponders after %v: it waited instead of returning at once", d)
		}
	}

	rec := newRPCRecorder()
	start := time.Now()
	must(t, a.RPCCall("nr", 2, "q", nil, rec))
	got := rpcRecv(t, rec.got, rpcWait, "RPCResponse")
	if !errors.Is(got.err, notifier.ErrNoResponders) || got.results == nil || len(got.results) != 0 {
		t.Fatalf("RPCResponse(%v, %v); want empty non-nil results and ErrNoResponders", got.results, got.err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RPCCall reported ErrNoResponders after %v, not at once", d)
	}
}

// --- §4.4: handler errors and panics -------------------------------------

func TestRPCHandlerErrors(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	failing := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) { return nil, errors.New("boom") }}
	custom := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) {
		return nil, &notifier.RemoteError{Code: 42, Message: "custom"}
	}}
	must(t, b.RPCRegister("he", notifier.Match{}, "fail", failing))
	must(t, b.RPCRegister("he", notifier.Match{}, "custom", custom))
	must(t, b.RPCRegister("he", notifier.Match{}, "mixed", failing))
	must(t, a.RPCRegister("he", notifier.Match{}, "mixed", rpcConst("ok")))

	res, err := a.RPC(ctx, "he", 1, "fail", nil)
	if err != nil || len(res) != 1 {
		t.Fatalf("RPC = %v, %v; want one result and nil (a handler error is not a call error)", res, err)
	}
	re := rpcRemote(t, res[0])
	if re.Code != notifier.CodeHandler || re.Message != "boom" {
		t.Fatalf("RemoteError = %+v, want code %d and the handler's message", re, notifier.CodeHandler)
	}
	var s string
	if derr := res[0].Decode(&s); derr != res[0].Err {
		t.Fatalf("Result.Decode = %v, want r.Err %v", derr, res[0].Err)
	}

	res, err = a.RPC(ctx, "he", 1, "custom", nil)
	if err != nil || len(res) != 1 {
		t.Fatalf("RPC = %v, %v", res, err)
	}
	if re := rpcRemote(t, res[0]); re.Code != 42 || re.Message != "custom" {
		t.Fatalf("RemoteError = %+v, want the handler's own {42 custom}", re)
	}

	// The other responders' results still come back.
	res, err = a.RPC(ctx, "he", 1, "mixed", nil)
	if err != nil || len(res) != 2 {
		t.Fatalf("RPC = %v, %v; want two results", res, err)
	}
	var values, errs int
	for _, r := range res {
		if r.Err != nil {
			rpcRemote(t, r)
			errs++
		} else if rpcStrings(t, []notifier.Result{r})[0] == "ok" {
			values++
		}
	}
	if values != 1 || errs != 1 {
		t.Fatalf("got %d values and %d errors, want 1 and 1", values, errs)
	}
}

func TestRPCHandlerPanic(t *testing.T) {
	srv := testenv.Run(t)
	a := connect(t, srv.URL())
	b := connect(t, srv.URL())
	c := connect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	panicky := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) { panic("kaboom") }}
	must(t, b.RPCRegister("pa", notifier.Match{}, "q", panicky))
	must(t, b.RPCRegister("pa", notifier.Match{}, "q", rpcConst("b")))
	must(t, c.RPCRegister("pa", notifier.Match{}, "q", rpcConst("c")))
	must(t, b.RPCRegister("pa", notifier.Match{}, "after", rpcConst("still here")))

	for i := range 3 {
		res, err := a.RPC(ctx, "pa", int64(i), "q", nil)
		if err != nil || len(res) != 3 {
			t.Fatalf("call %d: RPC = %v, %v; want three results", i, res, err)
		}
		var values []string
		panics := 0
		for _, r := range res {
			if r.Err == nil {
				values = append(values, rpcStrings(t, []notifier.Result{r})...)
				continue
			}
			if re := rpcRemote(t, r); re.Code != notifier.CodePanic {
				t.Fatalf("RemoteError code %d, want CodePanic", re.Code)
			}
			panics++
		}
		slices.Sort(values)
		if panics != 1 || !slices.Equal(values, []string{"b", "c"}) {
			t.Fatalf("call %d: %d panics and values %q; want 1 and [b c]", i, panics, values)
		}
	}
	// The Notifier whose handler panicked keeps answering.
	res, err := a.RPC(ctx, "pa", 1, "after", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpcStrings(t, res); !slices.Equal(got, []string{"still here"}) {
		t.Fatalf("after panics: %q", got)
	}
}
