package notifier_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

func ExampleSubscriberFunc() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	n, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	got := make(chan string, 1)
	// The pointer is the destination: keep it to unsubscribe.
	logins := notifier.NewSubscriberFunc(func(object string, id int64, cmd string, args notifier.Args) {
		var name string
		_ = args.Decode(&name)
		got <- fmt.Sprintf("%s #%d %s: %s", object, id, cmd, name)
	})
	if err := n.Subscribe("user", notifier.Match{}, "login", logins); err != nil {
		fmt.Println(err)
		return
	}
	_ = n.Publish("user", 42, "login", "alice")
	select {
	case s := <-got:
		fmt.Println(s)
	case <-time.After(5 * time.Second):
		fmt.Println("nothing received")
	}
	fmt.Println(n.Unsubscribe("user", notifier.Match{}, "login", logins))
	// Output:
	// user #42 login: alice
	// <nil>
}

func ExampleResponderFunc() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	n, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	add := notifier.NewResponderFunc(func(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
		var xs []int
		if err := args.Decode(&xs); err != nil {
			return nil, err
		}
		sum := 0
		for _, x := range xs {
			sum += x
		}
		return sum, nil
	})
	if err := n.RPCRegister("math", notifier.Match{}, "add", add); err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	results, err := n.RPC(ctx, "math", 1, "add", []int{1, 2, 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	var sum int
	if err := results[0].Decode(&sum); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sum:", sum)
	// Output: sum: 6
}

func ExampleResultHandlerFunc() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	n, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	done := make(chan struct{})
	report := notifier.NewResultHandlerFunc(func(object string, id int64, cmd string, results []notifier.Result, err error) {
		defer close(done)
		fmt.Printf("%s/%d/%s: %d results, err=%v\n", object, id, cmd, len(results), err)
	})
	// Nobody is registered: RPCCall returns at once, the handler gets
	// ErrNoResponders.
	if err := n.RPCCall("math", 1, "add", []int{1, 2}, report); err != nil {
		fmt.Println(err)
		return
	}
	<-done
	// Output: math/1/add: 0 results, err=notifier: no responders
}

// exampleCounter is a Subscriber that counts its notifications and signals when
// the whole bus has received want of them.
type exampleCounter struct {
	n     atomic.Int64
	total *atomic.Int64
	want  int64
	done  chan struct{}
}

func (c *exampleCounter) Notify(string, int64, string, notifier.Args) {
	c.n.Add(1)
	if c.total.Add(1) == c.want {
		close(c.done)
	}
}

// Slices share the traffic by weight: each publish reaches exactly one of
// the matching slices of the whole bus, here on two Notifiers, drawn with
// probability proportional to its weight. Weight 0 is standby: drawn only
// while no weighted slice matches.
func ExampleNotifier_Slice() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	var nodes [2]*notifier.Notifier
	for i := range nodes {
		if nodes[i], err = notifier.Connect(srv.URL()); err != nil {
			fmt.Println(err)
			return
		}
		defer nodes[i].Close()
	}

	const publishes = 1000
	var total atomic.Int64
	done := make(chan struct{})
	light := &exampleCounter{total: &total, want: publishes, done: done}
	heavy := &exampleCounter{total: &total, want: publishes, done: done}
	standby := &exampleCounter{total: &total, want: publishes, done: done}
	// Slices on different Notifiers, even with different patterns, compete
	// in the same draw: every one of them matches the even ids.
	_ = nodes[0].Slice("job", notifier.Match{}, "run", light, 1)
	_ = nodes[1].Slice("job", notifier.Match{Mask: 1, Value: 0}, "run", heavy, 3)
	_ = nodes[1].Slice("job", notifier.Match{}, "run", standby, 0)

	for i := range publishes {
		_ = nodes[0].Publish("job", int64(2*i), "run", nil)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Println("timed out")
		return
	}
	a, b := light.n.Load(), heavy.n.Load()
	fmt.Println("received in all:", a+b+standby.n.Load())
	fmt.Println("standby received:", standby.n.Load())
	// 1000 draws at 1:3 give about 250 and 750; the bounds are more than
	// six standard deviations wide.
	fmt.Println("weight 3 received about three times weight 1:", 2*a < b && b < 5*a)
	// Output:
	// received in all: 1000
	// standby received: 0
	// weight 3 received about three times weight 1: true
}

// An RPC reaches every full registration plus one slice drawn by weight.
// A weight-0 slice is a standby that answers only once no weighted slice is
// left.
func ExampleNotifier_RPCSlice() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	n, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	answer := func(name string) *notifier.ResponderFunc {
		return notifier.NewResponderFunc(func(context.Context, string, int64, string, notifier.Args) (any, error) {
			return name, nil
		})
	}
	primary, backup := answer("primary"), answer("backup")
	_ = n.RPCSlice("cache", notifier.Match{}, "get", primary, 1)
	_ = n.RPCSlice("cache", notifier.Match{}, "get", backup, 0)
	_ = n.RPCRegister("cache", notifier.Match{}, "get", answer("audit")) // full: always called

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call := func() {
		results, err := n.RPC(ctx, "cache", 7, "get", nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		var names []string
		for _, r := range results {
			var s string
			_ = r.Decode(&s)
			names = append(names, s)
		}
		slices.Sort(names) // results come in arrival order
		fmt.Println(names)
	}
	for range 3 {
		call()
	}
	_ = n.RPCUnregister("cache", notifier.Match{}, "get", primary)
	call()
	// Output:
	// [audit primary]
	// [audit primary]
	// [audit primary]
	// [audit backup]
}
