package main

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// rawRounds measures the floor NATS itself sets under the registration
// rows, on the same servers and bus: n plain nats.go connections (spread
// over the cluster like the Notifiers) subscribe to one subject and answer
// each message with a 32-byte reply, and one more connection publishes
// and waits for all n replies. A registration round is this exchange plus
// the directory's work, so the sequential row compares with the median
// round of a 64-byte message (an announcement of one registration) and the
// 10-goroutine row with 100 rounds of a 320-byte one (ten registrations).
func rawRounds(e *env, n int) (r rawRound, err error) {
	url := func(i int) string {
		if len(e.cluster) > 0 {
			return e.cluster[i%len(e.cluster)].URL()
		}
		return e.url
	}
	var cl closer
	defer cl.run()
	subj := e.unique("rawround.")
	ack := make([]byte, 32)
	conns := make([]*nats.Conn, n+1)
	for i := range conns {
		nc, err := nats.Connect(url(i), nats.Name("bench-raw-round"))
		if err != nil {
			return r, fmt.Errorf("raw round: connect %d: %w", i, err)
		}
		cl.add(nc.Close)
		conns[i] = nc
	}
	pub, subs := conns[0], conns[1:]
	for _, nc := range subs {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) { _ = nc.Publish(m.Reply, ack) }); err != nil {
			return r, fmt.Errorf("raw round: %w", err)
		}
		if err := nc.Flush(); err != nil {
			return r, fmt.Errorf("raw round: %w", err)
		}
	}
	var got atomic.Int64
	done := make(chan struct{}, 1)
	inbox := nats.NewInbox()
	if _, err := pub.Subscribe(inbox, func(*nats.Msg) {
		if got.Add(1) == int64(n) {
			done <- struct{}{}
		}
	}); err != nil {
		return r, fmt.Errorf("raw round: %w", err)
	}
	if err := pub.Flush(); err != nil {
		return r, fmt.Errorf("raw round: %w", err)
	}
	round := func(data []byte) (time.Duration, error) {
		got.Store(0)
		t := time.Now()
		if err := pub.PublishMsg(&nats.Msg{Subject: subj, Reply: inbox, Data: data}); err != nil {
			return 0, err
		}
		select {
		case <-done:
			return time.Since(t), nil
		case <-time.After(e.cfg.timeout):
			return 0, fmt.Errorf("raw round: %d/%d replies within %v", got.Load(), n, e.cfg.timeout)
		}
	}
	// On a cluster the subscriptions reach the other servers
	// asynchronously: the first round that gets every reply starts the
	// measurement (a round short of replies times out and is retried).
	small, large := make([]byte, 64), make([]byte, 320)
	ready := false
	for range 10 {
		if _, err := round(small); err == nil {
			ready = true
			break
		}
	}
	if !ready {
		return r, fmt.Errorf("raw round: never all %d replies", n)
	}
	lat := make([]time.Duration, 0, 50)
	cpu0 := processCPU()
	for range 50 {
		d, err := round(small)
		if err != nil {
			return r, err
		}
		lat = append(lat, d)
	}
	cpu1 := processCPU()
	t := time.Now()
	for range 100 {
		if _, err := round(large); err != nil {
			return r, err
		}
	}
	r.hundred, r.hundredCPU = time.Since(t), processCPU()-cpu1
	r.one, r.oneCPU = summarize(lat).p50, (cpu1-cpu0)/50
	return r, nil
}

// rawRound is what rawRounds measured: the median round of a 64-byte
// message and the process CPU a round took, and 100 rounds of a 320-byte
// one and the CPU they took.
type rawRound struct {
	one, oneCPU, hundred, hundredCPU time.Duration
}
