package notifier_test

import (
	"context"
	"testing"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

type chanSub chan string

func (c chanSub) Notify(object string, id int64, cmd string, args notifier.Args) {
	var s string
	_ = args.Decode(&s)
	c <- s
}

type echo struct{}

func (echo) RPCCall(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	var s string
	err := args.Decode(&s)
	return "echo:" + s, err
}

func TestSmoke(t *testing.T) {
	s := testenv.Run(t)
	a, err := notifier.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := notifier.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := make(chanSub, 10)
	if err := b.Subscribe("obj", notifier.Match{}, "cmd", &c); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("obj", 5, "cmd", "hi"); err != nil {
		t.Fatal(err)
	}
	if got := <-c; got != "hi" {
		t.Fatal(got)
	}
	e := &echo{}
	if err := b.RPCRegister("obj", notifier.Exact(7), "q", e); err != nil {
		t.Fatal(err)
	}
	res, err := a.RPC(context.Background(), "obj", 7, "q", "x")
	if err != nil || len(res) != 1 {
		t.Fatal(res, err)
	}
	var out string
	if err := res[0].Decode(&out); err != nil || out != "echo:x" {
		t.Fatal(out, err)
	}
	if _, err := a.RPC(context.Background(), "obj", 8, "q", "x"); err != notifier.ErrNoResponders {
		t.Fatal(err)
	}
}
