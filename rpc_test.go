package notifier_test

import (
	"bytes"
	"context"
	"encoding/json"
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

// Behaviour tests of RPC (SPEC §4, §5, §8): RPCRegister, RPCSlice,
// RPCUnregister, RPCUnregisterAll, RPC, RPCs and RPCCall. Helpers carry an
// "rpc" prefix so they never collide with the package's shared test helpers.

// rpcWait bounds every wait for something that should happen promptly.
const rpcWait = 5 * time.Second

// rpcFn is a Responder running fn and counting its calls. A pointer, so it is
// a valid (comparable) destination.
type rpcFn struct {
	calls atomic.Int64
	fn    func(ctx context.Context, id int64, args notifier.Args) (any, error)
}

var _ notifier.Responder = (*rpcFn)(nil)

func (r *rpcFn) RPCCall(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	r.calls.Add(1)
	return r.fn(ctx, id, args)
}

// rpcConst answers v to every call.
func rpcConst(v any) *rpcFn {
	return &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) { return v, nil }}
}

// rpcBlock answers v once release is closed, ignoring its ctx: an answer
// that comes too late. entered, if not nil, receives one value per call
// started.
func rpcBlock(v any, entered chan<- struct{}, release <-chan struct{}) *rpcFn {
	return &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) {
		if entered != nil {
			entered <- struct{}{}
		}
		<-release
		return v, nil
	}}
}

// rpcRelease returns a channel closed when t ends, before the Notifiers
// connected earlier close (cleanups run last in, first out), so handlers
// blocked on it let Close finish.
func rpcRelease(t *testing.T) chan struct{} {
	ch := make(chan struct{})
	t.Cleanup(func() { close(ch) })
	return ch
}

// rpcBoth is a Subscriber and a Responder at once, counting each kind of call.
type rpcBoth struct{ notified, called atomic.Int64 }

var (
	_ notifier.Subscriber = (*rpcBoth)(nil)
	_ notifier.Responder  = (*rpcBoth)(nil)
)

func (b *rpcBoth) Notify(string, int64, string, notifier.Args) { b.notified.Add(1) }

func (b *rpcBoth) RPCCall(context.Context, string, int64, string, notifier.Args) (any, error) {
	b.called.Add(1)
	return "both", nil
}

// rpcSub is a Subscriber forwarding each decoded string argument.
type rpcSub struct{ ch chan string }

func (s *rpcSub) Notify(_ string, _ int64, _ string, args notifier.Args) {
	var v string
	_ = args.Decode(&v)
	s.ch <- v
}

// rpcNonComparable is a Responder value that cannot be a destination.
type rpcNonComparable struct{ _ []int }

func (rpcNonComparable) RPCCall(context.Context, string, int64, string, notifier.Args) (any, error) {
	return nil, nil
}

// rpcResponse is one RPCResponse call.
type rpcResponse struct {
	object  string
	id      int64
	cmd     string
	results []notifier.Result
	err     error
}

// rpcRecorder is a ResultHandler recording its calls. When gate is not nil,
// RPCResponse first waits for it to close.
type rpcRecorder struct {
	calls atomic.Int64
	gate  chan struct{}
	got   chan rpcResponse // buffered beyond any test's needs, so an extra call never blocks
}

var _ notifier.ResultHandler = (*rpcRecorder)(nil)

func newRPCRecorder() *rpcRecorder { return &rpcRecorder{got: make(chan rpcResponse, 16)} }

func (r *rpcRecorder) RPCResponse(object string, id int64, cmd string, results []notifier.Result, err error) {
	if r.gate != nil {
		<-r.gate
	}
	r.calls.Add(1)
	r.got <- rpcResponse{object, id, cmd, results, err}
}

// rpcGauge tracks how many handlers run at once, and the most ever.
type rpcGauge struct{ cur, max atomic.Int64 }

func (g *rpcGauge) enter() {
	c := g.cur.Add(1)
	for {
		m := g.max.Load()
		if c <= m || g.max.CompareAndSwap(m, c) {
			return
		}
	}
}

func (g *rpcGauge) leave() { g.cur.Add(-1) }

// rpcConnect connects a Notifier closed when t ends.
func rpcConnect(t *testing.T, url string, opts ...notifier.Option) *notifier.Notifier {
	t.Helper()
	n, err := notifier.Connect(url, opts...)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// rpcNew makes a Notifier with New over a connection of its own, which the
// test may close to simulate a crash. Both are closed when t ends.
func rpcNew(t *testing.T, url string, opts ...notifier.Option) (*notifier.Notifier, *nats.Conn) {
	t.Helper()
	nc := testenv.Connect(t, url)
	n, err := notifier.New(nc, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, nc
}

// rpcKill closes nc without the Notifier saying goodbye, and waits until the
// server has dropped the client, so NATS answers "no responders" for it.
func rpcKill(t *testing.T, srv *testenv.Server, nc *nats.Conn) {
	t.Helper()
	before := srv.Server().NumClients()
	nc.Close()
	rpcEventually(t, rpcWait, func() bool { return srv.Server().NumClients() < before })
}

func rpcCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func rpcMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// rpcEventually polls cond every few milliseconds until it holds, failing t
// after timeout.
func rpcEventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not synchronisation
	}
}

// rpcRecv receives from ch, failing t after timeout.
func rpcRecv[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("no %s within %v", what, timeout)
		var zero T
		return zero
	}
}

// rpcStrings decodes every result as a string, failing t on a result error.
func rpcStrings(t *testing.T, res []notifier.Result) []string {
	t.Helper()
	out := make([]string, 0, len(res))
	for i, r := range res {
		var s string
		if err := r.Decode(&s); err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		out = append(out, s)
	}
	return out
}

// rpcSorted is rpcStrings, sorted.
func rpcSorted(t *testing.T, res []notifier.Result) []string {
	t.Helper()
	s := rpcStrings(t, res)
	slices.Sort(s)
	return s
}

// rpcCheckTimeout fails t unless err is the RPC timeout error.
func rpcCheckTimeout(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, notifier.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want one matching ErrTimeout and context.DeadlineExceeded", err)
	}
}

// rpcRemote returns the *RemoteError of a result, failing t if it has none.
func rpcRemote(t *testing.T, r notifier.Result) *notifier.RemoteError {
	t.Helper()
	var re *notifier.RemoteError
	if !errors.As(r.Err, &re) {
		t.Fatalf("Result.Err = %v (%T), want a *RemoteError", r.Err, r.Err)
	}
	return re
}

// rpcTolerance is 6 standard deviations of a binomial count.
func rpcTolerance(n int, p float64) float64 { return 6 * math.Sqrt(float64(n)*p*(1-p)) }

// --- §4.1, §4.2: who is reached, what comes back --------------------------

func TestRPCReachesEveryFullAndOneWeightedSlice(t *testing.T) {
	srv := testenv.Run(t)
	a := rpcConnect(t, srv.URL(), notifier.WithRandSource(rand.NewPCG(1, 2)))
	b := rpcConnect(t, srv.URL())
	c := rpcConnect(t, srv.URL())

	const id = 5 // odd
	odd := notifier.Match{Mask: 1, Value: 1}
	fullA, fullB, fullC := rpcConst("full-a"), rpcConst("full-b"), rpcConst("full-c")
	sliceB, sliceC := rpcConst("slice-b"), rpcConst("slice-c")
	other := rpcConst("other")
	rpcMust(t, a.RPCRegister("svc", notifier.Exact(id), "get", fullA)) // the caller's own
	rpcMust(t, b.RPCRegister("svc", notifier.Match{}, "get", fullB))
	rpcMust(t, c.RPCRegister("svc", odd, "get", fullC))
	// Overlapping slices with different patterns on different Notifiers
	// compete in one draw.
	rpcMust(t, b.RPCSlice("svc", notifier.Match{}, "get", sliceB, 1))
	rpcMust(t, c.RPCSlice("svc", odd, "get", sliceC, 3))
	// Never matching: other id, other cmd, other object.
	rpcMust(t, c.RPCRegister("svc", notifier.Exact(id+1), "get", other))
	rpcMust(t, b.RPCSlice("svc", notifier.Exact(id+1), "get", other, 100))
	rpcMust(t, b.RPCRegister("svc", notifier.Match{}, "put", other))
	rpcMust(t, c.RPCSlice("svc2", notifier.Match{}, "get", other, 100))

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
	a := rpcConnect(t, srv.URL(), notifier.WithRandSource(rand.NewPCG(3, 4)))
	b := rpcConnect(t, srv.URL())
	c := rpcConnect(t, srv.URL())
	ctx := rpcCtx(t, 60*time.Second)

	// Weight 0 is standby while a weighted slice matches.
	rpcMust(t, b.RPCSlice("sb", notifier.Match{}, "q", rpcConst("b"), 0))
	rpcMust(t, c.RPCSlice("sb", notifier.Match{}, "q", rpcConst("c"), 1))
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
	rpcMust(t, b.RPCSlice("sb0", notifier.Match{}, "q", rpcConst("b"), 0))
	rpcMust(t, c.RPCSlice("sb0", notifier.Match{}, "q", rpcConst("c"), 0))
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

func TestRPCResultsInArrivalOrder(t *testing.T) {
	srv := testenv.Run(t)
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	c := rpcConnect(t, srv.URL())

	// A spy sees each reply on its way to the caller's inbox. The slow
	// responder answers only after the spy saw the fast reply (recognised by
	// its msgpack-encoded value), so the server has queued the fast reply to
	// the caller before the slow one.
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
	rpcMust(t, err)
	rpcMust(t, spy.Flush())

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
	rpcMust(t, c.RPCRegister("order", notifier.Match{}, "q", slow)) // registered first
	rpcMust(t, b.RPCRegister("order", notifier.Match{}, "q", fast))

	for i := range 5 {
		want := fmt.Sprintf("fast-%d", i)
		marker, err := msgpack.Marshal(want)
		rpcMust(t, err)
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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	silent := rpcConst(nil) // returns (nil, nil)
	rpcMust(t, b.RPCRegister("nil", notifier.Match{}, "q", silent))
	rpcMust(t, a.RPCRegister("nil", notifier.Match{}, "q", rpcConst("v")))
	rpcMust(t, b.RPCRegister("nil", notifier.Match{}, "quiet", silent))

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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	r := rpcConst("r")
	rpcMust(t, b.RPCRegister("pp", notifier.Exact(3), "q", r))
	rpcMust(t, b.RPCRegister("pp", notifier.Match{}, "q", r))
	rpcMust(t, b.RPCRegister("pp", notifier.Exact(3), "q", r)) // again: no-op

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := rpcConnect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	// Notification registrations never answer RPCs.
	sub, slice := &rpcBoth{}, &rpcBoth{}
	rpcMust(t, b.Subscribe("sep", notifier.Match{}, "x", sub))
	rpcMust(t, b.Slice("sep", notifier.Match{}, "x", slice, 1))
	if _, err := a.RPC(ctx, "sep", 1, "x", nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Fatalf("RPC to notification registrations: err = %v, want ErrNoResponders", err)
	}
	if n := sub.called.Load() + slice.called.Load(); n != 0 {
		t.Fatalf("notification registrations answered %d RPCs", n)
	}

	// RPC registrations never get publishes.
	resp, respSlice := &rpcBoth{}, &rpcBoth{}
	rpcMust(t, b.RPCRegister("sep", notifier.Match{}, "y", resp))
	rpcMust(t, b.RPCSlice("sep", notifier.Match{}, "y", respSlice, 1))
	witness := &rpcSub{ch: make(chan string, 32)}
	rpcMust(t, b.Subscribe("sep", notifier.Match{}, "y", witness))
	const pubs = 20
	for i := range pubs {
		rpcMust(t, a.Publish("sep", int64(i), "y", "n"))
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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := rpcConnect(t, srv.URL())
	// Registrations that do not match the call.
	rpcMust(t, b.RPCRegister("nr", notifier.Exact(1), "q", rpcConst("x")))
	rpcMust(t, b.RPCSlice("nr", notifier.Exact(1), "q", rpcConst("x"), 1))
	rpcMust(t, b.RPCRegister("nr", notifier.Match{}, "other", rpcConst("x")))
	rpcMust(t, b.Subscribe("nr", notifier.Match{}, "q", &rpcSub{ch: make(chan string, 1)}))

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
	rpcMust(t, a.RPCCall("nr", 2, "q", nil, rec))
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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	failing := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) { return nil, errors.New("boom") }}
	custom := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) {
		return nil, &notifier.RemoteError{Code: 42, Message: "custom"}
	}}
	rpcMust(t, b.RPCRegister("he", notifier.Match{}, "fail", failing))
	rpcMust(t, b.RPCRegister("he", notifier.Match{}, "custom", custom))
	rpcMust(t, b.RPCRegister("he", notifier.Match{}, "mixed", failing))
	rpcMust(t, a.RPCRegister("he", notifier.Match{}, "mixed", rpcConst("ok")))

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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	c := rpcConnect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	panicky := &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) { panic("kaboom") }}
	rpcMust(t, b.RPCRegister("pa", notifier.Match{}, "q", panicky))
	rpcMust(t, b.RPCRegister("pa", notifier.Match{}, "q", rpcConst("b")))
	rpcMust(t, c.RPCRegister("pa", notifier.Match{}, "q", rpcConst("c")))
	rpcMust(t, b.RPCRegister("pa", notifier.Match{}, "after", rpcConst("still here")))

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

// --- §4.5: deadlines --------------------------------------------------------

func TestRPCDeadlineFromContext(t *testing.T) {
	srv := testenv.Run(t)
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(time.Minute))
	b := rpcConnect(t, srv.URL())
	c := rpcConnect(t, srv.URL())

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
	rpcMust(t, b.RPCRegister("dl", notifier.Match{}, "q", rpcConst("fast")))
	rpcMust(t, c.RPCRegister("dl", notifier.Match{}, "q", slow))

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(timeout))
	b := rpcConnect(t, srv.URL())
	release := rpcRelease(t)
	rpcMust(t, b.RPCRegister("dt", notifier.Match{}, "q", rpcConst("fast")))
	rpcMust(t, b.RPCRegister("dt", notifier.Match{}, "q", rpcBlock("slow", nil, release)))

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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	// Concurrency 1: the ping below runs only after the late reply was sent.
	c := rpcConnect(t, srv.URL(), notifier.WithConcurrency(1))

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
		rpcMust(t, b.RPCRegister("late", notifier.Match{}, "q", rpcConst("early")))
	}
	rpcMust(t, c.RPCRegister("late", notifier.Match{}, "q", slow))
	rpcMust(t, c.RPCRegister("late", notifier.Match{}, "ping", rpcConst("pong")))

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(time.Minute))
	b := rpcConnect(t, srv.URL())

	var perID [8]atomic.Int64
	times10 := &rpcFn{fn: func(_ context.Context, id int64, _ notifier.Args) (any, error) {
		perID[id].Add(1)
		return id * 10, nil
	}}
	for _, id := range []int64{1, 2, 5} {
		rpcMust(t, b.RPCRegister("rs", notifier.Exact(id), "q", times10))
	}
	// Ids 3 and 5 also have a responder that never answers in time.
	hang := rpcBlock(int64(-1), nil, rpcRelease(t))
	rpcMust(t, b.RPCRegister("rs", notifier.Exact(3), "q", hang))
	rpcMust(t, b.RPCRegister("rs", notifier.Exact(5), "q", hang))
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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(30*time.Second))
	b := rpcConnect(t, srv.URL())
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	rpcMust(t, b.RPCRegister("ac", notifier.Match{}, "q", rpcBlock("done", entered, release)))
	rpcMust(t, b.RPCRegister("ac", notifier.Match{}, "ping", rpcConst("pong")))

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := rpcConnect(t, srv.URL())
	rpcMust(t, b.RPCRegister("og", notifier.Match{}, "ping", rpcConst("pong")))

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(timeout))
	b := rpcConnect(t, srv.URL())
	rpcMust(t, b.RPCRegister("ct", notifier.Match{}, "q", rpcConst("fast")))
	rpcMust(t, b.RPCRegister("ct", notifier.Match{}, "q", rpcBlock("slow", nil, rpcRelease(t))))
	rpcMust(t, b.RPCRegister("ct", notifier.Match{}, "ping", rpcConst("pong")))

	rec := newRPCRecorder()
	start := time.Now()
	rpcMust(t, a.RPCCall("ct", 1, "q", nil, rec))
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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	rpcMust(t, b.RPCRegister("bi", notifier.Match{}, "q", rpcConst("ok")))

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
	a := rpcConnect(t, srv.URL())
	r := rpcConst("x")
	rpcMust(t, a.RPCRegister("cl", notifier.Match{}, "q", r))
	rpcMust(t, a.Close())
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
	a := rpcConnect(t, srv.URL())
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
	rpcMust(t, a.RPCRegister(long, notifier.Match{}, long, r))
	if res, err := a.RPC(ctx, long, 1, long, nil); err != nil || len(res) != 1 {
		t.Errorf("128-byte names: %v, %v", res, err)
	}
}

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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL()) // default concurrency
	const calls = 8

	// Every handler waits until all 8 run at once: serialised handlers
	// would time out.
	var g rpcGauge
	var entered atomic.Int64
	all := make(chan struct{})
	rpcMust(t, b.RPCRegister("cc", notifier.Match{}, "barrier", &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
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
	rpcMust(t, b.RPCRegister("cc", notifier.Match{}, "work", &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL(), notifier.WithConcurrency(1))
	var g rpcGauge
	rpcMust(t, b.RPCRegister("cb", notifier.Match{}, "q", &rpcFn{fn: func(ctx context.Context, _ int64, _ notifier.Args) (any, error) {
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
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	rpcMust(t, b.RPCRegister("sd", notifier.Match{}, "slow", rpcBlock("slow", entered, release)))
	rpcMust(t, b.RPCRegister("sd", notifier.Match{}, "fast", rpcConst("fast")))

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b := rpcConnect(t, srv.URL())
	c := rpcConnect(t, srv.URL())
	rpcMust(t, b.RPCRegister("cs", notifier.Match{}, "q", rpcConst("b")))
	rpcMust(t, b.RPCSlice("cs", notifier.Match{}, "q", rpcConst("b-slice"), 1e6))
	rpcMust(t, c.RPCRegister("cs", notifier.Match{}, "q", rpcConst("c")))
	rpcMust(t, c.RPCSlice("cs", notifier.Match{}, "q", rpcConst("c-slice"), 1))
	rpcMust(t, b.RPCRegister("cs", notifier.Match{}, "only-b", rpcConst("b")))
	rpcMust(t, b.Close())

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second))
	b, nb := rpcNew(t, srv.URL(), notifier.WithHeartbeat(100*time.Millisecond))
	c := rpcConnect(t, srv.URL())
	rpcMust(t, b.RPCRegister("dc", notifier.Match{}, "q", rpcConst("b")))
	rpcMust(t, c.RPCRegister("dc", notifier.Match{}, "q", rpcConst("c")))
	rpcMust(t, b.RPCRegister("dc", notifier.Match{}, "only-b", rpcConst("b")))

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
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(time.Minute))
	b, nb := rpcNew(t, srv.URL(), notifier.WithHeartbeat(100*time.Millisecond))
	c := rpcConnect(t, srv.URL())
	entered := make(chan struct{}, 1)
	rpcMust(t, b.RPCRegister("mc", notifier.Match{}, "q", rpcBlock("b", entered, rpcRelease(t))))
	rpcMust(t, c.RPCRegister("mc", notifier.Match{}, "q", rpcConst("c")))

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
	rpcCheckTimeout(t, got.err)
	if v := rpcStrings(t, got.res); !slices.Equal(v, []string{"c"}) {
		t.Fatalf("results %q, want [c] without the vanished B", v)
	}
	if got.at > timeout+time.Second {
		t.Fatalf("RPC returned after %v, later than its %v deadline", got.at, timeout)
	}
}

func TestRPCSliceRedrawOnDeadResponder(t *testing.T) {
	srv := testenv.Run(t)
	a := rpcConnect(t, srv.URL(), notifier.WithRPCTimeout(10*time.Second), notifier.WithRandSource(rand.NewPCG(5, 6)))
	c := rpcConnect(t, srv.URL())
	rpcMust(t, c.RPCSlice("rd", notifier.Match{}, "q", rpcConst("c"), 1))

	// Each round a heavy slice on a fresh B is drawn first, then B's
	// connection dies without goodbye: the call must draw again, C.
	for round := range 3 {
		b, nb := rpcNew(t, srv.URL()) // default heartbeat: B stays listed for seconds
		rpcMust(t, b.RPCSlice("rd", notifier.Match{}, "q", rpcConst("b"), 1e6))
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

// --- §5: lifecycle ----------------------------------------------------------------

func TestRPCCluster(t *testing.T) {
	servers := testenv.RunCluster(t, 3)
	a := rpcConnect(t, servers[0].URL())
	owners := []*notifier.Notifier{rpcConnect(t, servers[1].URL()), rpcConnect(t, servers[2].URL())}
	// Let the three, connected at the same moment, know each other first:
	// joining races with route interest (see TestRPCClusterFreshConnect).
	// Each one reaching the others' probes shows they do.
	all := append([]*notifier.Notifier{a}, owners...)
	probes := make([]*rpcFn, len(all))
	for i, n := range all {
		probes[i] = rpcConst("probe")
		rpcMust(t, n.RPCRegister("clu", notifier.Match{}, "probe", probes[i]))
	}
	for _, n := range all {
		rpcEventually(t, rpcWait, func() bool {
			res, err := n.RPC(rpcCtx(t, rpcWait), "clu", 1, "probe", nil)
			return err == nil && len(res) == len(all)
		})
	}
	for i, n := range all {
		rpcMust(t, n.RPCUnregisterAll(probes[i]))
	}

	for i := range 30 {
		owner := owners[i%2]
		r := rpcConst(int64(i))
		if i%3 == 0 {
			rpcMust(t, owner.RPCSlice("clu", notifier.Exact(int64(i)), "q", r, 1))
		} else {
			rpcMust(t, owner.RPCRegister("clu", notifier.Exact(int64(i)), "q", r))
		}
		// Right after the registration returned, on another server.
		res, err := a.RPC(rpcCtx(t, rpcWait), "clu", int64(i), "q", nil)
		if err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
		var v int64
		if len(res) != 1 || res[0].Decode(&v) != nil || v != int64(i) {
			t.Fatalf("registration %d: results %v", i, res)
		}
		// Right after the unregistration returned: nobody.
		rpcMust(t, owner.RPCUnregister("clu", notifier.Exact(int64(i)), "q", r))
		if _, err := a.RPC(rpcCtx(t, rpcWait), "clu", int64(i), "q", nil); !errors.Is(err, notifier.ErrNoResponders) {
			t.Fatalf("after unregistration %d: %v, want ErrNoResponders", i, err)
		}
		if n := r.calls.Load(); n != 1 {
			t.Fatalf("registration %d called %d times, want 1", i, n)
		}
	}
}

// TestRPCClusterFreshConnect: a Notifier whose Connect returned is on the bus
// (SPEC §5), so a registration made right afterwards by a Notifier on another
// server must reach it once RPCRegister returns.
func TestRPCClusterFreshConnect(t *testing.T) {
	servers := testenv.RunCluster(t, 3)
	for round := range 10 {
		a := rpcConnect(t, servers[round%3].URL())
		b := rpcConnect(t, servers[(round+1)%3].URL())
		rpcMust(t, b.RPCRegister("fresh", notifier.Match{}, "q", rpcConst("b")))
		res, err := a.RPC(rpcCtx(t, rpcWait), "fresh", 1, "q", nil)
		if err != nil {
			t.Fatalf("round %d: RPC right after Connect and RPCRegister on another server: %v", round, err)
		}
		if got := rpcStrings(t, res); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("round %d: %q, want [b]", round, got)
		}
		rpcMust(t, a.Close())
		rpcMust(t, b.Close())
	}
}

func TestRPCUnregister(t *testing.T) {
	srv := testenv.Run(t)
	a := rpcConnect(t, srv.URL())
	b := rpcConnect(t, srv.URL())
	ctx := rpcCtx(t, 30*time.Second)

	r := rpcConst("r")
	keep := rpcConst("keep")
	rpcMust(t, b.RPCRegister("un", notifier.Exact(1), "q", r))
	rpcMust(t, b.RPCRegister("un", notifier.Match{}, "q", r))
	rpcMust(t, b.RPCSlice("un", notifier.Match{}, "s", r, 1))
	rpcMust(t, b.RPCRegister("un", notifier.Match{}, "k", keep))

	count := func(cmd string) int {
		t.Helper()
		res, err := a.RPC(ctx, "un", 1, cmd, nil)
		if errors.Is(err, notifier.ErrNoResponders) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return len(res)
	}
	if n := count("q"); n != 2 {
		t.Fatalf("%d results, want 2", n)
	}
	rpcMust(t, b.RPCUnregister("un", notifier.Exact(1), "q", r))
	if n := count("q"); n != 1 {
		t.Fatalf("after RPCUnregister of one pattern: %d results, want 1", n)
	}

	// Unknown registrations: ErrNotRegistered, nothing changes.
	for _, tc := range []struct {
		id   notifier.Match
		cmd  string
		dest notifier.Responder
	}{
		{notifier.Exact(1), "q", r},   // already gone
		{notifier.Exact(2), "q", r},   // other pattern
		{notifier.Match{}, "x", r},    // other cmd
		{notifier.Match{}, "q", keep}, // other destination
	} {
		if err := b.RPCUnregister("un", tc.id, tc.cmd, tc.dest); !errors.Is(err, notifier.ErrNotRegistered) {
			t.Errorf("RPCUnregister(%+v, %q): %v, want ErrNotRegistered", tc.id, tc.cmd, err)
		}
	}
	if n := count("q"); n != 1 {
		t.Fatalf("after failed unregistrations: %d results, want 1", n)
	}
	if n := count("s"); n != 1 {
		t.Fatalf("slice: %d results, want 1", n)
	}

	// RPCUnregisterAll removes full and slice registrations of r only.
	calls := r.calls.Load()
	rpcMust(t, b.RPCUnregisterAll(r))
	if n := count("q") + count("s"); n != 0 {
		t.Fatalf("after RPCUnregisterAll: %d results", n)
	}
	if n := r.calls.Load(); n != calls {
		t.Fatalf("unregistered responder called %d more times", n-calls)
	}
	if n := count("k"); n != 1 {
		t.Fatalf("other destination: %d results, want 1", n)
	}
	if err := b.RPCUnregisterAll(r); err != nil {
		t.Fatalf("RPCUnregisterAll again: %v, want nil", err)
	}
	if err := b.RPCUnregisterAll(rpcConst("never")); err != nil {
		t.Fatalf("RPCUnregisterAll of an unknown destination: %v, want nil", err)
	}

	// Notification registrations are not RPC registrations.
	both := &rpcBoth{}
	rpcMust(t, b.Subscribe("un", notifier.Match{}, "n", both))
	if err := b.RPCUnregister("un", notifier.Match{}, "n", both); !errors.Is(err, notifier.ErrNotRegistered) {
		t.Fatalf("RPCUnregister of a Subscribe: %v, want ErrNotRegistered", err)
	}
	rpcMust(t, b.RPCUnregisterAll(both))
	rpcMust(t, a.Publish("un", 1, "n", nil))
	rpcEventually(t, rpcWait, func() bool { return both.notified.Load() == 1 })
}

// --- §7: the gateway for other NATS clients ------------------------------------

func TestRPCGateway(t *testing.T) {
	srv := testenv.Run(t)
	b := rpcConnect(t, srv.URL())
	echo := &rpcFn{fn: func(_ context.Context, _ int64, args notifier.Args) (any, error) {
		var s string
		if err := args.Decode(&s); err != nil {
			return nil, err
		}
		return "echo:" + s, nil
	}}
	rpcMust(t, b.RPCRegister("gw", notifier.Match{}, "say", echo))
	rpcMust(t, b.RPCRegister("gw", notifier.Exact(7), "say", &rpcFn{fn: func(context.Context, int64, notifier.Args) (any, error) {
		return nil, errors.New("nope")
	}}))
	nc := testenv.Connect(t, srv.URL())

	request := func(msg *nats.Msg) (notifier.GatewayReply, map[string]json.RawMessage) {
		t.Helper()
		m, err := nc.RequestMsg(msg, rpcWait)
		if err != nil {
			t.Fatalf("request %s: %v", msg.Subject, err)
		}
		var reply notifier.GatewayReply
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(m.Data, &reply); err != nil {
			t.Fatalf("reply %q is not a GatewayReply: %v", m.Data, err)
		}
		if err := json.Unmarshal(m.Data, &raw); err != nil {
			t.Fatalf("reply %q is not a JSON object: %v", m.Data, err)
		}
		return reply, raw
	}

	reply, raw := request(&nats.Msg{Subject: "notifier.rpc.gw.say.7", Data: []byte(`"json"`)})
	if reply.Error != "" || len(reply.Results) != 2 {
		t.Fatalf("reply %+v, want two results and no error", reply)
	}
	if _, ok := raw["results"]; !ok {
		t.Fatalf("reply %v has no \"results\"", raw)
	}
	var values []string
	var remote []*notifier.RemoteError
	for _, r := range reply.Results {
		switch {
		case r.Error != nil:
			remote = append(remote, r.Error)
		case r.Value != nil:
			var s string
			if err := r.Value.Decode(&s); err != nil {
				t.Fatal(err)
			}
			values = append(values, s)
		}
	}
	if !slices.Equal(values, []string{"echo:json"}) || len(remote) != 1 || remote[0].Code != notifier.CodeHandler || remote[0].Message != "nope" {
		t.Fatalf("values %q, errors %v; want [echo:json] and one handler error", values, remote)
	}

	// msgpack with its Content-Type.
	body, err := msgpack.Marshal("mp")
	rpcMust(t, err)
	mp := &nats.Msg{Subject: "notifier.rpc.gw.say.8", Data: body, Header: nats.Header{}}
	mp.Header.Set("Content-Type", notifier.ContentTypeMsgpack)
	reply, _ = request(mp)
	if reply.Error != "" || len(reply.Results) != 1 || reply.Results[0].Value == nil {
		t.Fatalf("msgpack request: reply %+v", reply)
	}
	var s string
	if err := reply.Results[0].Value.Decode(&s); err != nil || s != "echo:mp" {
		t.Fatalf("msgpack request: %q, %v", s, err)
	}

	// Bad JSON: an error reply, no results, and no handler called.
	calls := echo.calls.Load()
	reply, _ = request(&nats.Msg{Subject: "notifier.rpc.gw.say.8", Data: []byte(`{not json`)})
	if reply.Error == "" || len(reply.Results) != 0 {
		t.Fatalf("bad JSON: reply %+v, want an error and no results", reply)
	}
	if echo.calls.Load() != calls {
		t.Fatalf("a handler was called with undecodable arguments")
	}

	// Nobody registered.
	reply, _ = request(&nats.Msg{Subject: "notifier.rpc.gw.nobody.1", Data: []byte(`1`)})
	if reply.Error == "" || len(reply.Results) != 0 {
		t.Fatalf("no responders: reply %+v, want an error and no results", reply)
	}
}
