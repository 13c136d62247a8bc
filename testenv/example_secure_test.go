package testenv_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// exclaim answers RPCs with its string argument and "!".
type exclaim struct{}

func (exclaim) RPCCall(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
	var s string
	if err := args.Decode(&s); err != nil {
		return nil, err
	}
	return fmt.Sprintf("%s!", s), nil
}

// A secured server as in production: TLS with a private CA and operator
// (JWT) mode; the Notifier logs in with a creds file, as the README shows.
func ExampleWithOperator() {
	dir, err := os.MkdirTemp("", "testenv-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	certs, err := testenv.GenerateTLS(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	op, err := testenv.GenerateOperator(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := testenv.Start(testenv.WithTLS(certs), testenv.WithOperator(op))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Shutdown()

	n, err := notifier.Connect(s.URL(), notifier.WithNATSOptions(
		nats.UserCredentials(op.CredsFile),
		nats.RootCAs(certs.CAFile),
	))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	if err := n.RPCRegister("greeter", notifier.Match{}, "shout", exclaim{}); err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	results, err := n.RPC(ctx, "greeter", 1, "shout", "hello")
	if err != nil {
		fmt.Println(err)
		return
	}
	var reply string
	if err := results[0].Decode(&reply); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Server().SystemAccount() != nil, reply)
	// Output: true hello!
}
