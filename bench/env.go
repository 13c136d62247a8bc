package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/internal/syncbuf"
	"github.com/natsnotifier/notifier/testenv"
)

// Names shared by the raw and the Notifier variants.
const (
	benchObject = "bench"
	benchCmd    = "pub"
	benchRPCCmd = "echo"
	benchID     = 1
	payloadSize = 64
)

// env is the one embedded server and what every scenario shares.
type env struct {
	cfg     config
	srv     *testenv.Server
	url     string
	cluster []*testenv.Server // the scale row's cluster (-scale-servers), srv among them; nil: srv alone
	spread  atomic.Int64      // round robin of connectNotifier over the cluster
	log     io.Writer
	seq     atomic.Int64 // prefixes and subjects, unique per rig
	payload []byte
	events  *eventCounts // the Notifiers' log lines, counted
}

func newEnv(cfg config, logw io.Writer) (*env, error) {
	s, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	p := make([]byte, payloadSize)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return &env{cfg: cfg, srv: s, url: s.URL(), log: &syncbuf.Writer{W: logw}, payload: p, events: newEventCounts()}, nil
}

func (e *env) close() { e.srv.Shutdown() }

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// unique returns a fresh token for a prefix or subject, so that rigs never
// see each other's traffic or directories.
func (e *env) unique(base string) string {
	return fmt.Sprintf("%s%d", base, e.seq.Add(1))
}

// notifierOpts are the options of every Notifier of a rig: defaults but for
// the prefix, the receivers' queue size (-queue) and the logger (-v).
func (e *env) notifierOpts(prefix string, extra ...notifier.Option) []notifier.Option {
	opts := []notifier.Option{notifier.WithPrefix(prefix)}
	if e.cfg.queue > 0 {
		opts = append(opts, notifier.WithQueueSize(e.cfg.queue))
	}
	var text slog.Handler
	level := slog.LevelWarn
	if e.cfg.verbose {
		if e.cfg.info {
			level = slog.LevelInfo
		}
		text = slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: level})
	}
	opts = append(opts, notifier.WithLogger(slog.New(e.events.handler(text, level))))
	return append(opts, extra...)
}

// connectNotifier joins the bus under prefix, on the next server of the
// cluster in turn if there is one.
func (e *env) connectNotifier(prefix string, extra ...notifier.Option) (*notifier.Notifier, error) {
	url := e.url
	if len(e.cluster) > 0 {
		url = e.cluster[int(e.spread.Add(1))%len(e.cluster)].URL()
	}
	n, err := notifier.Connect(url, e.notifierOpts(prefix, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("notifier connect: %w", err)
	}
	return n, nil
}

// connectRaw opens a plain nats.go connection.
func (e *env) connectRaw() (*nats.Conn, error) {
	nc, err := nats.Connect(e.url, nats.Name("bench-raw"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {
			// Slow-consumer drops are read from Subscription.Dropped; the
			// handler only keeps nats.go from printing them.
		}))
	if err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	return nc, nil
}

// Variants, also the value of the pprof label "variant".
const (
	variantNotifier = "notifier"
	variantRaw      = "raw"
	variantMicro    = "micro"
)

// labeled runs f with the pprof label variant=v; goroutines started inside
// (a connection's read loop, subscription dispatchers, handler goroutines)
// inherit it, so a CPU profile can be split by variant.
func labeled(v string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("variant", v), func(context.Context) { f() })
}

// closer collects cleanup functions and runs them in reverse order.
type closer []func()

func (c *closer) add(f func()) { *c = append(*c, f) }

func (c *closer) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// sink counts deliveries of one round and notes when the last expected one
// arrived.
type sink struct {
	cur atomic.Pointer[round]
}

type round struct {
	want uint64
	got  atomic.Uint64
	end  atomic.Int64 // unix nanos of the want-th delivery, or of the waiter's check
	done chan struct{}
}

// arm starts a round expecting want deliveries.
func (s *sink) arm(want uint64) *round {
	r := &round{want: want, done: make(chan struct{})}
	s.cur.Store(r)
	return r
}

// hit counts one delivery.
func (s *sink) hit() {
	r := s.cur.Load()
	if r == nil {
		return
	}
	if r.got.Add(1) == r.want {
		r.end.Store(time.Now().UnixNano())
		close(r.done)
	}
}

// onMsg is the raw subscribers' callback.
func (s *sink) onMsg(*nats.Msg) { s.hit() }

// countSub is the Notifiers' Subscriber.
type countSub struct{ s *sink }

var _ notifier.Subscriber = (*countSub)(nil)

func (c *countSub) Notify(string, int64, string, notifier.Args) { c.s.hit() }

// wait waits until every expected delivery of r arrived or was dropped
// (dropped reports drops since the round started), or until deadline. It
// returns whether the deadline passed first.
func (r *round) wait(dropped func() uint64, deadline time.Time) (timedOut bool) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.done:
			return false
		case now := <-tick.C:
			if r.got.Load()+dropped() >= r.want {
				r.end.CompareAndSwap(0, now.UnixNano())
				return false
			}
			if now.After(deadline) {
				r.end.CompareAndSwap(0, now.UnixNano())
				return true
			}
		}
	}
}
