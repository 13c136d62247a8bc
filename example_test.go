package notifier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// exampleUpper answers an RPC with its string argument in upper case.
type exampleUpper struct{}

func (*exampleUpper) RPCCall(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	var s string
	if err := args.Decode(&s); err != nil {
		return nil, err
	}
	return fmt.Sprintf("%s #%d: %s", object, id, strings.ToUpper(s)), nil
}

// exampleSquare answers an RPC with the square of the id.
type exampleSquare struct{}

func (*exampleSquare) RPCCall(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	return id * id, nil
}

// exampleFailing answers every RPC with an error.
type exampleFailing struct{}

func (*exampleFailing) RPCCall(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	return nil, errors.New("out of stock")
}

// examplePrinter prints the outcome of an RPCCall, then closes done.
type examplePrinter struct{ done chan struct{} }

func (p *examplePrinter) RPCResponse(object string, id int64, cmd string, results []notifier.Result, err error) {
	defer close(p.done)
	fmt.Printf("response to %s/%d/%s, err=%v\n", object, id, cmd, err)
	for _, r := range results {
		var s string
		if err := r.Decode(&s); err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(s)
	}
}

// exampleInbox passes each notification on as text.
type exampleInbox struct{ got chan string }

func (in *exampleInbox) Notify(object string, id int64, cmd string, args notifier.Args) {
	var s string
	_ = args.Decode(&s)
	in.got <- fmt.Sprintf("%s #%d %s: %s", object, id, cmd, s)
}

func ExampleConnect() {
	srv, err := testenv.Start() // in a test, testenv.Run(t)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	n, err := notifier.Connect(srv.URL(), notifier.WithRPCTimeout(2*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("connected:", n.Conn().IsConnected())
	fmt.Println("close:", n.Close())
	fmt.Println("after close:", n.Publish("greeter", 1, "hello", nil))
	// Output:
	// connected: true
	// close: <nil>
	// after close: notifier: closed
}

func ExampleNotifier_Publish() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	receiver, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer receiver.Close()
	inbox := &exampleInbox{got: make(chan string, 1)}
	// Every id whose lowest bit is 1: the odd ones.
	if err := receiver.Subscribe("door", notifier.Match{Mask: 1, Value: 1}, "opened", inbox); err != nil {
		fmt.Println(err)
		return
	}

	sender, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sender.Close()
	_ = sender.Publish("door", 2, "opened", "not for the odd ones")
	_ = sender.Publish("door", 3, "opened", "front door")

	select {
	case s := <-inbox.got:
		fmt.Println(s)
	case <-time.After(5 * time.Second):
		fmt.Println("nothing received")
	}
	// Output: door #3 opened: front door
}

func ExampleNotifier_RPC() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	responder, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer responder.Close()
	if err := responder.RPCRegister("shop", notifier.Match{}, "shout", &exampleUpper{}); err != nil {
		fmt.Println(err)
		return
	}
	if err := responder.RPCRegister("shop", notifier.Match{}, "buy", &exampleFailing{}); err != nil {
		fmt.Println(err)
		return
	}

	caller, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer caller.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// One Result per responder.
	results, err := caller.RPC(ctx, "shop", 42, "shout", "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range results {
		var s string
		if err := r.Decode(&s); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s)
	}

	// A handler's error comes back as the responder's *RemoteError.
	results, err = caller.RPC(ctx, "shop", 42, "buy", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	var re *notifier.RemoteError
	if errors.As(results[0].Err, &re) {
		fmt.Println("remote error:", re.Code == notifier.CodeHandler, re.Message)
	}

	// Nobody registered: ErrNoResponders, at once.
	_, err = caller.RPC(ctx, "shop", 42, "sell", nil)
	fmt.Println(errors.Is(err, notifier.ErrNoResponders))
	// Output:
	// shop #42: HELLO
	// remote error: true out of stock
	// true
}

func ExampleNotifier_RPCs() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	responder, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer responder.Close()
	if err := responder.RPCRegister("math", notifier.Match{}, "square", &exampleSquare{}); err != nil {
		fmt.Println(err)
		return
	}

	caller, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer caller.Close()
	ids := []int64{2, 3, 2}
	all, err := caller.RPCs(context.Background(), "math", ids, "square", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, results := range all { // aligned with ids
		var v int64
		if err := results[0].Decode(&v); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%d² = %d\n", ids[i], v)
	}
	// Output:
	// 2² = 4
	// 3² = 9
	// 2² = 4
}

func ExampleNotifier_RPCCall() {
	srv, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()

	responder, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer responder.Close()
	if err := responder.RPCRegister("shop", notifier.Exact(7), "shout", &exampleUpper{}); err != nil {
		fmt.Println(err)
		return
	}

	caller, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer caller.Close()

	// RPCCall returns at once; RPCResponse runs later, on another goroutine.
	p := &examplePrinter{done: make(chan struct{})}
	if err := caller.RPCCall("shop", 7, "shout", "async", p); err != nil {
		fmt.Println(err)
		return
	}
	<-p.done

	// Nobody answers for id 8: RPCResponse gets ErrNoResponders.
	p = &examplePrinter{done: make(chan struct{})}
	if err := caller.RPCCall("shop", 8, "shout", "anyone?", p); err != nil {
		fmt.Println(err)
		return
	}
	<-p.done
	// Output:
	// response to shop/7/shout, err=<nil>
	// shop #7: ASYNC
	// response to shop/8/shout, err=notifier: no responders
}
