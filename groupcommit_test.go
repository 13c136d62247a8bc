package notifier_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// TestGroupCommitSubscribe: registration calls share announcements. On a
// bus of 6 Notifiers with probes off (an hour's heartbeat), so that the
// server carries nothing but the registrations' own messages, one
// registration alone costs an announcement and 5 acknowledgements. 200
// Subscribe calls from 10 goroutines cost less than half of 200 such
// rounds, and a Batch of 200 costs exactly one. Every registration is
// routed to from another Notifier once its call returned.
func TestGroupCommitSubscribe(t *testing.T) {
	t.Cleanup(func() { checkNoLeaks(t) })
	const (
		nPeers = 5
		g      = 10 // goroutines
		k      = 20 // Subscribe calls each
	)
	s := testenv.Run(t)
	opts := []notifier.Option{notifier.WithHeartbeat(time.Hour), notifier.WithRegisterTimeout(5 * time.Second)}
	a := connect(t, s.URL(), opts...)
	var peers []*notifier.Notifier
	for range nPeers {
		peers = append(peers, connect(t, s.URL(), opts...))
	}
	if got := a.Stats().Peers; got != nPeers {
		t.Fatalf("a knows %d peers, want %d", got, nPeers)
	}
	inMsgs := func() uint64 {
		v, err := s.Server().Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(v.InMsgs)
	}
	round := uint64(1 + nPeers) // one announcement and its acknowledgements

	// 10 goroutines.
	recs := make([]*recorder, g)
	in0 := inMsgs()
	var wg sync.WaitGroup
	errs := make(chan error, g)
	for gi := range g {
		recs[gi] = &recorder{}
		wg.Go(func() {
			for ki := range k {
				if err := a.Subscribe("gc", notifier.Exact(int64(gi*k+ki)), "x", recs[gi]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The server may count the last acknowledgements a moment after it
	// delivered them: that can only make this figure smaller, and the
	// bound is far above what is measured.
	in := inMsgs() - in0
	t.Logf("%d Subscribe calls from %d goroutines: %d messages into the server (%d one round per call would take)", g*k, g, in, g*k*round)
	if limit := g * k * round / 2; in > limit {
		t.Errorf("%d Subscribe calls from %d goroutines: %d messages into the server, want at most %d (half a round per call)", g*k, g, in, limit)
	}
	for id := range int64(g * k) {
		if err := peers[id%nPeers].Publish("gc", id, "x", nil); err != nil {
			t.Fatal(err)
		}
	}
	for gi, r := range recs {
		r.waitLen(t, k, 5*time.Second)
		for ki := range k {
			if c := r.Count(int64(gi*k + ki)); c != 1 {
				t.Errorf("registration %d got %d notifications, want 1", gi*k+ki, c)
			}
		}
	}

	// One Batch.
	in0 = inMsgs()
	b := a.Batch()
	rec := &recorder{}
	for id := range int64(200) {
		b.Subscribe("gcb", notifier.Exact(id), fmt.Sprintf("x%d", id), rec)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	// Wait until the server counted the whole round, then check that it
	// was the only one.
	poll(5*time.Second, func() bool { in = inMsgs() - in0; return in >= round })
	if in != round {
		t.Errorf("a Batch of 200: %d messages into the server, want %d (one announcement, %d acknowledgements)", in, round, nPeers)
	}
	if err := peers[0].Publish("gcb", 199, "x199", nil); err != nil {
		t.Fatal(err)
	}
	rec.waitLen(t, 1, 5*time.Second)
}
