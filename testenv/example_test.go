package testenv_test

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/testenv"
)

func ExampleStart() {
	s, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Shutdown()

	nc, err := nats.Connect(s.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	sub, _ := nc.SubscribeSync("greet")
	nc.Publish("greet", []byte("hello"))
	msg, err := sub.NextMsg(time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(msg.Data))
	// Output: hello
}

func ExampleStartCluster() {
	servers, err := testenv.StartCluster(3)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()

	sub, err := nats.Connect(servers[0].URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()
	pub, err := nats.Connect(servers[2].URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()

	// A responder on servers[0] answers a request sent to servers[2]. Interest
	// crosses the routes asynchronously, so the request is retried.
	sub.Subscribe("greet", func(m *nats.Msg) { m.Respond([]byte("hello from " + servers[0].Server().Name())) })
	sub.Flush()
	for range 100 {
		reply, err := pub.Request("greet", nil, 100*time.Millisecond)
		if err == nil {
			fmt.Println(string(reply.Data))
			return
		}
	}
	fmt.Println("no reply")
	// Output: hello from testenv-0
}

func ExampleServer_Start() {
	s, err := testenv.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Shutdown()

	reconnected := make(chan struct{}, 1) // holds the first reconnect; later ones are not needed
	nc, err := nats.Connect(s.URL(),
		nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	s.Shutdown() // the client is disconnected and keeps trying
	if err := s.Start(); err != nil {
		fmt.Println(err)
		return
	}
	select {
	case <-reconnected:
		fmt.Println("reconnected to the same URL:", nc.ConnectedUrl() == s.URL())
	case <-time.After(10 * time.Second):
		fmt.Println("not reconnected")
	}
	// Output: reconnected to the same URL: true
}
