package notifier_test

import (
	"fmt"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// ExampleNotifier_Batch registers 1,000 doors in one step: one directory
// announcement and one round of acknowledgements for all of them. When
// Commit returns, every Notifier on the bus routes to each of them.
func ExampleNotifier_Batch() {
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
	sender, err := notifier.Connect(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sender.Close()

	inbox := &exampleInbox{got: make(chan string, 1)}
	b := receiver.Batch()
	for id := range int64(1000) {
		b.Subscribe("door", notifier.Exact(id), "opened", inbox)
	}
	fmt.Println("in the batch:", b.Len())
	fmt.Println("commit:", b.Commit())
	fmt.Println("registered:", len(receiver.Registrations()))

	if err := sender.Publish("door", 742, "opened", "front"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-inbox.got)

	// An invalid entry registers nothing.
	err = receiver.Batch().Subscribe("door", notifier.Exact(1), "closed", inbox).Subscribe("bad.name", notifier.Match{}, "x", inbox).Commit()
	fmt.Println(err)
	fmt.Println("registered:", len(receiver.Registrations()))
	// Output:
	// in the batch: 1000
	// commit: <nil>
	// registered: 1000
	// door #742 opened: front
	// batch entry 1: notifier: invalid name: object "bad.name"
	// registered: 1000
}
