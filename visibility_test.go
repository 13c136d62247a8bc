package notifier_test

import (
	"slices"
	"testing"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// Registration visibility (the package doc: registration calls return once the bus knows them): what a registration call promises the
// rest of the bus when it returns.

func TestVisibility(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		s := testenv.Run(t)
		testVisibility(t, s.URL(), s.URL())
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.RunCluster(t, 3)
		testVisibility(t, c[0].URL(), c[1].URL())
	})
}

// testVisibility registers on a Notifier at recvURL and publishes at once
// from one at pubURL, 50 times, then unregisters and checks that nothing
// more arrives.
func testVisibility(t *testing.T, pubURL, recvURL string) {
	a := connect(t, pubURL)
	b := connect(t, recvURL)
	const object, cmd = "vis", "c"
	kept := &recorder{} // registered throughout: stays in the bus tables
	if err := b.Subscribe(object, notifier.Exact(-1), cmd, kept); err != nil {
		t.Fatal(err)
	}
	for i := range int64(50) {
		r := &recorder{}
		var err error
		if i%2 == 0 {
			err = b.Subscribe(object, notifier.Exact(i), cmd, r)
		} else {
			err = b.Slice(object, notifier.Exact(i), cmd, r, 1)
		}
		if err != nil {
			t.Fatalf("%d: register: %v", i, err)
		}
		if err := a.Publish(object, i, cmd, i); err != nil {
			t.Fatal(err)
		}
		if !poll(deliveryTimeout, func() bool { return r.Len() == 1 }) {
			t.Fatalf("%d: publish issued after the registration returned never arrived", i)
		}

		if i%4 < 2 {
			err = b.Unsubscribe(object, notifier.Exact(i), cmd, r)
		} else {
			err = b.UnsubscribeAll(r)
		}
		if err != nil {
			t.Fatalf("%d: unregister: %v", i, err)
		}
		if err := a.Publish(object, i, cmd, i); err != nil {
			t.Fatal(err)
		}
		if err := a.Publish(object, -1, cmd, i); err != nil {
			t.Fatal(err)
		}
		kept.waitLen(t, int(i)+1, deliveryTimeout)
		if got := r.Len(); got != 1 {
			t.Fatalf("%d: %d notifications, want 1: a publish issued after the unregistration returned arrived", i, got)
		}
	}
}

func TestRegisterRightAfterPeerJoined(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		s := testenv.Run(t)
		testNewcomer(t, s.URL(), s.URL())
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.RunCluster(t, 3)
		testNewcomer(t, c[0].URL(), c[1].URL())
	})
}

// testNewcomer: a Notifier at pubURL joins the bus; right after its Connect
// returns, a Notifier at recvURL that was there before registers, and the
// newcomer publishes. Once Connect returned the newcomer is on the bus, so
// the registration must reach it before Subscribe returns (the package doc: registration calls return once the bus knows them).
func testNewcomer(t *testing.T, pubURL, recvURL string) {
	b := connect(t, recvURL)
	for i := range int64(20) {
		a, err := notifier.Connect(pubURL)
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{}
		if err := b.Subscribe("newcomer", notifier.Exact(i), "c", r); err != nil {
			t.Fatal(err)
		}
		if err := a.Publish("newcomer", i, "c", i); err != nil {
			t.Fatal(err)
		}
		ok := poll(deliveryTimeout, func() bool { return r.Len() == 1 })
		_ = a.Close()
		if !ok {
			t.Fatalf("%d: a publish from a Notifier that had joined before the Subscribe returned never arrived", i)
		}
	}
}

func TestShortLivedPublisher(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		s := testenv.Run(t)
		testShortLived(t, s.URL(), s.URL())
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.RunCluster(t, 3)
		testShortLived(t, c[0].URL(), c[2].URL())
	})
}

// testShortLived connects a fresh receiver that registers, then a publisher
// that connects, publishes once and closes at once; the message must arrive.
func testShortLived(t *testing.T, pubURL, recvURL string) {
	for i := range int64(10) {
		b := connect(t, recvURL)
		r := &recorder{}
		if err := b.Subscribe("short", notifier.Exact(i), "c", r); err != nil {
			t.Fatal(err)
		}
		p, err := notifier.Connect(pubURL)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish("short", i, "c", i); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if !poll(deliveryTimeout, func() bool { return r.Len() == 1 }) {
			t.Fatalf("%d: the short-lived publisher's message was lost", i)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPrefixIsolation(t *testing.T) {
	s := testenv.Run(t)
	p1a := connect(t, s.URL(), notifier.WithPrefix("one"))
	p1b := connect(t, s.URL(), notifier.WithPrefix("one"))
	p2a := connect(t, s.URL(), notifier.WithPrefix("two.sub"))
	p2b := connect(t, s.URL(), notifier.WithPrefix("two.sub"))
	const object, cmd = "iso", "c"
	r1, r2 := &recorder{}, &recorder{}
	if err := p1b.Subscribe(object, notifier.Match{}, cmd, r1); err != nil {
		t.Fatal(err)
	}
	if err := p2b.Subscribe(object, notifier.Match{}, cmd, r2); err != nil {
		t.Fatal(err)
	}
	if err := p1a.Publish(object, 1, cmd, nil); err != nil {
		t.Fatal(err)
	}
	if err := p2a.Publish(object, 2, cmd, nil); err != nil {
		t.Fatal(err)
	}
	// From a plain NATS client, through each prefix's gateway.
	nc := testenv.Connect(t, s.URL())
	if err := nc.Publish("one.pub.iso.c.3", []byte("null")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("two.sub.pub.iso.c.4", []byte("null")); err != nil {
		t.Fatal(err)
	}
	r1.waitLen(t, 2, deliveryTimeout)
	r2.waitLen(t, 2, deliveryTimeout)
	pubFlush(t, p1a, p1b)
	pubFlush(t, p2a, p2b)
	if got := sorted(r1.IDs()); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("prefix one: got ids %v, want [1 3]", got)
	}
	if got := sorted(r2.IDs()); !slices.Equal(got, []int64{2, 4}) {
		t.Errorf("prefix two.sub: got ids %v, want [2 4]", got)
	}
}
