package notifier_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// Registrations racing Close leave nothing behind on the caller's connection:
// no subscription, no goroutine.
func TestRegisterRacingClose(t *testing.T) {
	srv := testenv.Run(t)
	connect(t, srv.URL()) // a peer, so registrations wait for acknowledgements
	nc := testenv.Connect(t, srv.URL())
	// nats.go's own request inbox subscription, made once, is not ours.
	_, _ = nc.Request("racing.nobody", nil, 50*time.Millisecond)
	base := nc.NumSubscriptions()
	for round := range 200 { // the window is narrow: many rounds make a regression likely to show
		n, err := notifier.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 1000; i++ {
					err := n.Subscribe(fmt.Sprintf("o%d_%d", g, i), notifier.Match{}, "c", &recorder{})
					if errors.Is(err, notifier.ErrClosed) {
						return
					}
				}
			}()
		}
		_ = n.Close()
		wg.Wait()
		// The micro service's endpoint drains asynchronously: allow it a
		// moment. A subscription Close forgot never goes.
		if !poll(5*time.Second, func() bool { return nc.NumSubscriptions() == base }) {
			t.Fatalf("round %d: %d subscriptions left on the caller's connection after Close, want %d", round, nc.NumSubscriptions(), base)
		}
	}
}

// Close ends RPCs in flight with ErrClosed instead of leaving them to their
// deadline.
func TestCloseEndsRPCsInFlight(t *testing.T) {
	srv := testenv.Run(t)
	a, err := notifier.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	b := connect(t, srv.URL())
	release := make(chan struct{})
	defer close(release)
	if err := b.RPCRegister("cl", notifier.Match{}, "q", rpcBlock("slow", nil, release)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := a.RPC(ctx, "cl", 1, "q", nil)
		done <- err
	}()
	// Wait until the call is at b's handler.
	eventually(t, 10*time.Second, func() bool { return b.Stats().RPCServed == 1 }, "the call reaches b")
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-done:
		if !errors.Is(err, notifier.ErrClosed) {
			t.Errorf("RPC in flight during Close: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RPC in flight still waiting 30s after Close began")
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}
