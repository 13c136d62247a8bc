package testenv

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/internal/leaktest"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 10 * time.Second

// reconnecting connects with fast, unlimited reconnects and returns a channel
// that receives a value on each reconnect.
func reconnecting(t *testing.T, url string) (*nats.Conn, <-chan struct{}) {
	t.Helper()
	reconnected := make(chan struct{}, 1) // one pending signal is enough
	nc := Connect(t, url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}),
	)
	return nc, reconnected
}

// roundTrip publishes on pub until sub receives the message, at most for
// waitTimeout: interest crosses routes asynchronously.
func roundTrip(t *testing.T, sub, pub *nats.Conn, subject string) {
	t.Helper()
	ch := make(chan *nats.Msg, 64) // only the first message matters; extras are dropped with the sub
	s, err := sub.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer s.Unsubscribe()
	if err := sub.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for {
		if err := pub.Publish(subject, []byte("ping")); err != nil {
			t.Fatalf("publish: %v", err)
		}
		select {
		case m := <-ch:
			if string(m.Data) != "ping" {
				t.Fatalf("got %q, want %q", m.Data, "ping")
			}
			return
		case <-tick.C:
		case <-deadline:
			t.Fatalf("no message on %q within %v", subject, waitTimeout)
		}
	}
}

func waitReconnect(t *testing.T, reconnected <-chan struct{}) {
	t.Helper()
	select {
	case <-reconnected:
	case <-time.After(waitTimeout):
		t.Fatalf("client not reconnected within %v", waitTimeout)
	}
}

func TestRun(t *testing.T) {
	s := Run(t)
	if !strings.HasPrefix(s.URL(), "nats://127.0.0.1:") || strings.HasSuffix(s.URL(), ":4222") {
		t.Fatalf("URL = %q, want a random loopback port", s.URL())
	}
	nc := Connect(t, s.URL())
	roundTrip(t, nc, nc, "testenv.run")
}

func TestRestart(t *testing.T) {
	s := Run(t)
	url := s.URL()
	nc, reconnected := reconnecting(t, url)
	roundTrip(t, nc, nc, "testenv.before")

	s.Restart(t)
	if s.URL() != url {
		t.Fatalf("URL after restart = %q, want %q", s.URL(), url)
	}
	waitReconnect(t, reconnected)
	roundTrip(t, nc, nc, "testenv.after")
	if got := nc.ConnectedUrl(); got != url {
		t.Fatalf("connected to %q, want %q", got, url)
	}
}

func TestShutdownThenStart(t *testing.T) {
	s := Run(t)
	nc, reconnected := reconnecting(t, s.URL())
	if err := s.Start(); !errors.Is(err, ErrRunning) {
		t.Fatalf("Start on a running server: %v, want ErrRunning", err)
	}

	s.Shutdown()
	if s.Server() != nil {
		t.Fatal("Server() != nil after Shutdown")
	}
	if _, err := nats.Connect(s.URL(), nats.NoReconnect()); err == nil {
		t.Fatal("connected to a stopped server")
	}

	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitReconnect(t, reconnected)
	roundTrip(t, nc, nc, "testenv.started")
}

func TestShutdownIdempotent(t *testing.T) {
	s := Run(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
	s.Shutdown()
	// Restart of a stopped server starts it.
	s.Restart(t)
	roundTrip(t, Connect(t, s.URL()), Connect(t, s.URL()), "testenv.idem")
	s.Shutdown()
	s.Shutdown()
}

func TestRunCluster(t *testing.T) {
	servers := RunCluster(t, 3)
	if len(servers) != 3 {
		t.Fatalf("got %d servers, want 3", len(servers))
	}
	urls := map[string]bool{}
	for _, s := range servers {
		if err := s.cluster.checkFormed(); err != nil {
			t.Fatalf("cluster: %v", err)
		}
		if n := s.Server().NumRoutes(); n != 2 {
			t.Fatalf("%s: %d routes, want 2", s.URL(), n)
		}
		urls[s.URL()] = true
	}
	if len(urls) != 3 {
		t.Fatalf("URLs not distinct: %v", urls)
	}
	roundTrip(t, Connect(t, servers[0].URL()), Connect(t, servers[2].URL()), "testenv.cluster")
}

func TestClusterRestart(t *testing.T) {
	servers := RunCluster(t, 3)
	sub, reconnected := reconnecting(t, servers[0].URL())
	pub := Connect(t, servers[2].URL())

	// servers[0] was the seed, started with no routes of its own.
	for _, i := range []int{1, 0} {
		servers[i].Restart(t)
		for _, s := range servers {
			if n := s.Server().NumRoutes(); n != 2 {
				t.Fatalf("after restart of %d: %s has %d routes, want 2", i, s.URL(), n)
			}
		}
		roundTrip(t, Connect(t, servers[1].URL()), pub, "testenv.rejoin")
	}
	waitReconnect(t, reconnected)
	roundTrip(t, sub, pub, "testenv.rejoin.sub")
}

func TestClusterMemberDown(t *testing.T) {
	servers := RunCluster(t, 3)
	servers[2].Shutdown()
	// Restarting another member waits only for the running ones.
	servers[1].Restart(t)
	if err := servers[0].cluster.checkFormed(); err != nil {
		t.Fatalf("cluster without servers[2]: %v", err)
	}
	if err := servers[2].Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	roundTrip(t, Connect(t, servers[0].URL()), Connect(t, servers[2].URL()), "testenv.down")
}

func TestStartClusterSize(t *testing.T) {
	if _, err := StartCluster(0); err == nil {
		t.Fatal("StartCluster(0) succeeded")
	}
	one := RunCluster(t, 1)
	roundTrip(t, Connect(t, one[0].URL()), Connect(t, one[0].URL()), "testenv.one")
}

func TestNoGoroutineLeak(t *testing.T) {
	leaktest.Check(t, leaktest.Timeout(waitTimeout))

	s, err := Start()
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	servers, err := StartCluster(2)
	if err != nil {
		t.Fatalf("StartCluster: %v", err)
	}
	servers[0].Shutdown()
	if err := servers[0].Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	nc.Close()
	s.Shutdown()
	for _, c := range servers {
		c.Shutdown()
	}
	// leaktest's cleanup checks that every goroutine started since has ended.
}
