package notifier_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// TestSubscriberFunc: a function registered through NewSubscriberFunc
// receives what a Subscriber would, and the pointer is its identity: the
// same function behind two pointers is two destinations, and Unsubscribe
// takes the pointer that was registered.
func TestSubscriberFunc(t *testing.T) {
	srv := testenv.Run(t)
	recv := connect(t, srv.URL())
	send := connect(t, srv.URL())

	var mu sync.Mutex
	got := map[string][]int64{}
	record := func(name string) func(string, int64, string, notifier.Args) {
		return func(object string, id int64, cmd string, args notifier.Args) {
			var s string
			if err := args.Decode(&s); err != nil || object != "door" || cmd != "opened" || s != "hi" {
				t.Errorf("%s: Notify(%q, %d, %q, %q) (decode error %v)", name, object, id, cmd, s, err)
			}
			mu.Lock()
			got[name] = append(got[name], id)
			mu.Unlock()
		}
	}
	count := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(got[name])
	}
	f := record("f")
	a, b := notifier.NewSubscriberFunc(f), notifier.NewSubscriberFunc(f)
	var v notifier.SubscriberFunc = record("v")
	for _, dest := range []notifier.Subscriber{a, b} {
		if err := recv.Subscribe("door", notifier.Match{Mask: 1, Value: 1}, "opened", dest); err != nil {
			t.Fatal(err)
		}
	}
	if err := recv.Subscribe("door", notifier.Exact(3), "opened", &v); err != nil {
		t.Fatal(err)
	}
	// Registering the same pointer again is idempotent.
	if err := recv.Subscribe("door", notifier.Match{Mask: 1, Value: 1}, "opened", a); err != nil {
		t.Fatal(err)
	}

	for _, id := range []int64{1, 2, 3} {
		if err := send.Publish("door", id, "opened", "hi"); err != nil {
			t.Fatal(err)
		}
	}
	// f behind a and b: ids 1 and 3 each, twice; v: id 3.
	eventually(t, 5*time.Second, func() bool { return count("f") == 4 && count("v") == 1 }, "f 4 calls, v 1")

	// The other pointer to f is not registered: an error, nothing changes.
	if err := recv.Unsubscribe("door", notifier.Match{Mask: 1, Value: 1}, "opened", notifier.NewSubscriberFunc(f)); !errors.Is(err, notifier.ErrNotRegistered) {
		t.Fatalf("Unsubscribe of a new pointer: %v, want ErrNotRegistered", err)
	}
	if err := recv.Unsubscribe("door", notifier.Match{Mask: 1, Value: 1}, "opened", a); err != nil {
		t.Fatal(err)
	}
	var v2 notifier.SubscriberFunc = v // a copy of the function value: another variable, another destination
	if err := recv.UnsubscribeAll(&v2); err != nil {
		t.Fatal(err)
	}
	if err := send.Publish("door", 3, "opened", "hi"); err != nil {
		t.Fatal(err)
	}
	// b and v still get id 3: one more call each.
	eventually(t, 5*time.Second, func() bool { return count("f") == 5 && count("v") == 2 }, "f 5 calls, v 2")
	if err := recv.UnsubscribeAll(&v); err != nil {
		t.Fatal(err)
	}
	if err := recv.UnsubscribeAll(b); err != nil {
		t.Fatal(err)
	}
	// A last publish reaches nobody; a full subscription on the sender
	// marks when it has been delivered, so the counts below are final.
	seen := make(chan struct{}, 1)
	marker := notifier.NewSubscriberFunc(func(string, int64, string, notifier.Args) { seen <- struct{}{} })
	if err := recv.Subscribe("door", notifier.Exact(5), "opened", marker); err != nil {
		t.Fatal(err)
	}
	if err := send.Publish("door", 3, "opened", "hi"); err != nil {
		t.Fatal(err)
	}
	if err := send.Publish("door", 5, "opened", "hi"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("marker publish not delivered")
	}
	if count("f") != 5 || count("v") != 2 {
		t.Errorf("after UnsubscribeAll: f %d calls, v %d; want 5 and 2", count("f"), count("v"))
	}
}

// TestFuncNil: a nil adapter pointer and a pointer to a nil function are
// rejected with ErrInvalidDestination; nothing is registered.
func TestFuncNil(t *testing.T) {
	srv := testenv.Run(t)
	n := connect(t, srv.URL())
	var nilSub notifier.SubscriberFunc
	var nilResp notifier.ResponderFunc
	cases := []struct {
		name string
		err  error
	}{
		{"nil *SubscriberFunc", n.Subscribe("o", notifier.Match{}, "c", (*notifier.SubscriberFunc)(nil))},
		{"*SubscriberFunc to nil", n.Subscribe("o", notifier.Match{}, "c", &nilSub)},
		{"NewSubscriberFunc(nil)", n.Slice("o", notifier.Match{}, "c", notifier.NewSubscriberFunc(nil), 1)},
		{"nil *ResponderFunc", n.RPCRegister("o", notifier.Match{}, "c", (*notifier.ResponderFunc)(nil))},
		{"*ResponderFunc to nil", n.RPCRegister("o", notifier.Match{}, "c", &nilResp)},
		{"NewResponderFunc(nil)", n.RPCSlice("o", notifier.Match{}, "c", notifier.NewResponderFunc(nil), 1)},
		{"NewResultHandlerFunc(nil)", n.RPCCall("o", 1, "c", nil, notifier.NewResultHandlerFunc(nil))},
		{"nil *ResultHandlerFunc", n.RPCCall("o", 1, "c", nil, (*notifier.ResultHandlerFunc)(nil))},
	}
	for _, c := range cases {
		if !errors.Is(c.err, notifier.ErrInvalidDestination) {
			t.Errorf("%s: %v, want ErrInvalidDestination", c.name, c.err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.RPC(ctx, "o", 1, "c", nil); !errors.Is(err, notifier.ErrNoResponders) {
		t.Errorf("RPC after rejected registrations: %v, want ErrNoResponders", err)
	}
}

// TestResponderFunc: functions answer RPCs, errors come back as
// *RemoteError, (nil, nil) says nothing, and an RPC slice of functions is
// drawn by weight.
func TestResponderFunc(t *testing.T) {
	srv := testenv.Run(t)
	resp := connect(t, srv.URL())
	caller := connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	double := notifier.NewResponderFunc(func(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
		var x int
		if err := args.Decode(&x); err != nil {
			return nil, err
		}
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("handler ctx without the caller's deadline")
		}
		return 2 * x, nil
	})
	fail := notifier.NewResponderFunc(func(context.Context, string, int64, string, notifier.Args) (any, error) {
		return nil, &notifier.RemoteError{Code: 42, Message: "no"}
	})
	silent := notifier.NewResponderFunc(func(context.Context, string, int64, string, notifier.Args) (any, error) {
		return nil, nil
	})
	for _, r := range []struct {
		cmd  string
		dest notifier.Responder
	}{{"double", double}, {"fail", fail}, {"silent", silent}} {
		if err := resp.RPCRegister("math", notifier.Match{}, r.cmd, r.dest); err != nil {
			t.Fatal(err)
		}
	}
	res, err := caller.RPC(ctx, "math", 1, "double", 21)
	if err != nil || len(res) != 1 {
		t.Fatalf("RPC double: %v, %v", res, err)
	}
	var v int
	if err := res[0].Decode(&v); err != nil || v != 42 {
		t.Errorf("double(21) = %d, %v", v, err)
	}
	res, err = caller.RPC(ctx, "math", 1, "fail", nil)
	var re *notifier.RemoteError
	if err != nil || len(res) != 1 || !errors.As(res[0].Err, &re) || re.Code != 42 || re.Message != "no" {
		t.Errorf("RPC fail: %v, %v; want one *RemoteError{42, no}", res, err)
	}
	res, err = caller.RPC(ctx, "math", 1, "silent", nil)
	if err != nil || len(res) != 0 {
		t.Errorf("RPC silent: %v, %v; want no result, no error", res, err)
	}
	if err := resp.RPCUnregister("math", notifier.Match{}, "double", notifier.NewResponderFunc(nil)); !errors.Is(err, notifier.ErrInvalidDestination) {
		t.Errorf("RPCUnregister with a nil function: %v, want ErrInvalidDestination", err)
	}
	if err := resp.RPCUnregister("math", notifier.Match{}, "double", double); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.RPC(ctx, "math", 1, "double", 1); !errors.Is(err, notifier.ErrNoResponders) {
		t.Errorf("RPC after RPCUnregister: %v, want ErrNoResponders", err)
	}

	// Slices of functions: weight 0 is standby while a weighted one exists.
	var standby, active atomic.Int32
	counter := func(c *atomic.Int32) *notifier.ResponderFunc {
		return notifier.NewResponderFunc(func(context.Context, string, int64, string, notifier.Args) (any, error) {
			c.Add(1)
			return "ok", nil
		})
	}
	sb, ac := counter(&standby), counter(&active)
	if err := resp.RPCSlice("work", notifier.Match{}, "do", sb, 0); err != nil {
		t.Fatal(err)
	}
	if err := resp.RPCSlice("work", notifier.Match{}, "do", ac, 1); err != nil {
		t.Fatal(err)
	}
	const calls = 50
	for i := range calls {
		if res, err := caller.RPC(ctx, "work", int64(i), "do", nil); err != nil || len(res) != 1 {
			t.Fatalf("RPC %d to the slices: %v, %v", i, res, err)
		}
	}
	if standby.Load() != 0 || active.Load() != calls {
		t.Errorf("standby answered %d, weighted %d; want 0 and %d", standby.Load(), active.Load(), calls)
	}
	if err := resp.RPCUnregisterAll(ac); err != nil {
		t.Fatal(err)
	}
	if res, err := caller.RPC(ctx, "work", 1, "do", nil); err != nil || len(res) != 1 || standby.Load() != 1 {
		t.Errorf("RPC with only the standby left: %v, %v, standby answered %d", res, err, standby.Load())
	}
}

// TestResultHandlerFunc: RPCCall calls the function exactly once, with the
// results, and with ErrNoResponders when nobody answers.
func TestResultHandlerFunc(t *testing.T) {
	srv := testenv.Run(t)
	n := connect(t, srv.URL())
	if err := n.RPCRegister("math", notifier.Exact(3), "id", notifier.NewResponderFunc(func(_ context.Context, _ string, id int64, _ string, _ notifier.Args) (any, error) {
		return id, nil
	})); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		id      int64
		results []notifier.Result
		err     error
	}
	got := make(chan outcome, 4)
	h := notifier.NewResultHandlerFunc(func(object string, id int64, cmd string, results []notifier.Result, err error) {
		got <- outcome{id, results, err}
	})
	for _, id := range []int64{3, 4} {
		if err := n.RPCCall("math", id, "id", nil, h); err != nil {
			t.Fatal(err)
		}
	}
	byID := map[int64]outcome{}
	for range 2 {
		select {
		case o := <-got:
			byID[o.id] = o
		case <-time.After(10 * time.Second):
			t.Fatal("RPCResponse not called")
		}
	}
	var v int64
	if o := byID[3]; o.err != nil || len(o.results) != 1 || o.results[0].Decode(&v) != nil || v != 3 {
		t.Errorf("RPCCall id 3: %+v (value %d)", o, v)
	}
	if o := byID[4]; !errors.Is(o.err, notifier.ErrNoResponders) || len(o.results) != 0 {
		t.Errorf("RPCCall id 4: %+v, want ErrNoResponders", o)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-got:
		t.Errorf("RPCResponse called again: %+v", o)
	default:
	}
}
