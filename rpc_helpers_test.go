package notifier_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// Behaviour tests of RPC (see the package doc): RPCRegister, RPCSlice,
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
	eventually(t, rpcWait, func() bool { return srv.Server().NumClients() < before })
}

func rpcCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
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
