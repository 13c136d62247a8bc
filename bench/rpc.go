package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsnotifier/notifier"
)

// rpcCallTimeout bounds one call of every variant.
const rpcCallTimeout = 5 * time.Second

// rpcRig is a caller connection and an echo responder on another connection.
type rpcRig interface {
	// call makes one round trip and checks the echo. Safe for concurrent use.
	call() error
	close()
}

// errBadEcho reports a reply that is not the payload sent.
var errBadEcho = errors.New("bench: reply is not the echo of the request")

// --- raw nats.go and micro ---

type rawRPCRig struct {
	caller  *nats.Conn
	subj    string
	payload []byte
	c       closer
}

// newRawRPCRig sets up nc.Request to a plain echo subscription (micro false)
// or to a nats.go micro endpoint (micro true).
func newRawRPCRig(e *env, useMicro bool) (*rawRPCRig, error) {
	r := &rawRPCRig{payload: e.payload}
	v := variantRaw
	if useMicro {
		v = variantMicro
	}
	var err error
	labeled(v, func() { err = r.setup(e, useMicro) })
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *rawRPCRig) setup(e *env, useMicro bool) error {
	resp, err := e.connectRaw()
	if err != nil {
		return err
	}
	r.c.add(resp.Close)
	if useMicro {
		r.subj = e.unique("bench.micro.echo")
		svc, err := micro.AddService(resp, micro.Config{
			Name:    "bench",
			Version: "1.0.0",
			Endpoint: &micro.EndpointConfig{
				Subject: r.subj,
				Handler: micro.HandlerFunc(benchResponderMicro),
			},
		})
		if err != nil {
			return fmt.Errorf("micro: %w", err)
		}
		r.c.add(func() { _ = svc.Stop() })
	} else {
		r.subj = e.unique("bench.raw.echo")
		if _, err := resp.Subscribe(r.subj, benchResponderRaw); err != nil {
			return err
		}
	}
	if err := resp.Flush(); err != nil {
		return err
	}
	caller, err := e.connectRaw()
	if err != nil {
		return err
	}
	r.c.add(caller.Close)
	r.caller = caller
	return r.call() // the responder answers
}

// benchResponderRaw echoes. Its name marks the responder side in the
// allocation attribution.
func benchResponderRaw(m *nats.Msg) { _ = m.Respond(m.Data) }

// benchResponderMicro echoes on a micro endpoint.
func benchResponderMicro(req micro.Request) { _ = req.Respond(req.Data()) }

func (r *rawRPCRig) call() error {
	m, err := r.caller.Request(r.subj, r.payload, rpcCallTimeout)
	if err != nil {
		return err
	}
	if len(m.Data) != payloadSize {
		return errBadEcho
	}
	return nil
}

func (r *rawRPCRig) close() { r.c.run() }

// --- Notifier ---

type notifierRPCRig struct {
	caller  *notifier.Notifier
	payload []byte
	c       closer
}

// echoResponder returns its arguments.
type echoResponder struct{}

var _ notifier.Responder = (*echoResponder)(nil)

func (*echoResponder) RPCCall(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
	return args, nil
}

func newNotifierRPCRig(e *env) (*notifierRPCRig, error) {
	r := &notifierRPCRig{payload: e.payload}
	var err error
	labeled(variantNotifier, func() { err = r.setup(e) })
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *notifierRPCRig) setup(e *env) error {
	prefix := e.unique("benchrpc")
	resp, err := e.connectNotifier(prefix)
	if err != nil {
		return err
	}
	r.c.add(func() { _ = resp.Close() })
	if err := resp.RPCRegister(benchObject, notifier.Match{}, benchRPCCmd, &echoResponder{}); err != nil {
		return err
	}
	caller, err := e.connectNotifier(prefix)
	if err != nil {
		return err
	}
	r.c.add(func() { _ = caller.Close() })
	r.caller = caller
	return r.call()
}

// encodedPayloadSize is the payload as msgpack bin 8: two bytes of header.
const encodedPayloadSize = payloadSize + 2

func (r *notifierRPCRig) call() error {
	res, err := r.caller.RPC(context.Background(), benchObject, benchID, benchRPCCmd, r.payload)
	if err != nil {
		return err
	}
	if len(res) != 1 {
		return fmt.Errorf("%w: %d results", errBadEcho, len(res))
	}
	if res[0].Err != nil {
		return res[0].Err
	}
	if len(res[0].Value.Raw()) != encodedPayloadSize {
		return errBadEcho
	}
	return nil
}

func (r *notifierRPCRig) close() { r.c.run() }

// --- measurements ---

// benchSenderCallLoop makes n sequential calls and records each latency into
// lat. Its name marks the caller side in the allocation attribution.
func benchSenderCallLoop(r rpcRig, n int, lat []time.Duration) ([]time.Duration, error) {
	lat = lat[:0]
	for range n {
		t := time.Now()
		if err := r.call(); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t))
	}
	return lat, nil
}

// benchSenderCallers makes n calls from workers goroutines and returns the
// elapsed time.
func benchSenderCallers(r rpcRig, n, workers int) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make([]error, workers)
	start := time.Now()
	for w := range workers {
		k := n / workers
		if w < n%workers {
			k++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range k {
				if err := r.call(); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// latency is the summary of one latency round.
type latency struct{ p50, p99 time.Duration }

func summarize(lat []time.Duration) latency {
	s := slices.Clone(lat)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return latency{p50: q(0.50), p99: q(0.99)}
}

type rpcRigs struct {
	nt, raw, micro rpcRig
}

func newRPCRigs(e *env, withMicro bool) (*rpcRigs, error) {
	rs := &rpcRigs{}
	var err error
	if rs.raw, err = newRawRPCRig(e, false); err != nil {
		return nil, err
	}
	if withMicro {
		if rs.micro, err = newRawRPCRig(e, true); err != nil {
			rs.close()
			return nil, err
		}
	}
	if rs.nt, err = newNotifierRPCRig(e); err != nil {
		rs.close()
		return nil, err
	}
	return rs, nil
}

func (rs *rpcRigs) close() {
	for _, r := range []rpcRig{rs.nt, rs.raw, rs.micro} {
		if r != nil {
			r.close()
		}
	}
}

// variants returns the rigs in measuring order; run i rotates it.
func (rs *rpcRigs) variants(i int) []string {
	v := []string{variantRaw, variantNotifier}
	if rs.micro != nil {
		v = append(v, variantMicro)
	}
	i %= len(v)
	return append(v[i:], v[:i]...)
}

func (rs *rpcRigs) rig(v string) rpcRig {
	switch v {
	case variantNotifier:
		return rs.nt
	case variantMicro:
		return rs.micro
	}
	return rs.raw
}

func runRPC(e *env) ([]Row, error) {
	rs, err := newRPCRigs(e, true)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	n := e.cfg.rpcN
	lat := make([]time.Duration, 0, n)
	res := map[string][]latency{}
	for i := -1; i < e.cfg.runs; i++ { // run -1 is the warm-up
		for _, v := range rs.variants(max(i, 0)) {
			k := n
			if i < 0 {
				k = max(n/10, 500)
			}
			gcQuiet()
			labeled(v, func() { lat, err = benchSenderCallLoop(rs.rig(v), k, lat) })
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v, err)
			}
			l := summarize(lat)
			e.logf("  %-8s n=%d p50=%v p99=%v", v, k, l.p50, l.p99)
			if i >= 0 {
				res[v] = append(res[v], l)
			}
		}
	}
	var ntRatio, microRatio, nt99Ratio []float64
	p50 := map[string][]float64{}
	p99 := map[string][]float64{}
	for i := range e.cfg.runs {
		raw := res[variantRaw][i]
		ntRatio = append(ntRatio, safeDiv(float64(res[variantNotifier][i].p50), float64(raw.p50)))
		microRatio = append(microRatio, safeDiv(float64(res[variantMicro][i].p50), float64(raw.p50)))
		nt99Ratio = append(nt99Ratio, safeDiv(float64(res[variantNotifier][i].p99), float64(raw.p99)))
		for _, v := range []string{variantRaw, variantNotifier, variantMicro} {
			p50[v] = append(p50[v], float64(res[v][i].p50))
			p99[v] = append(p99[v], float64(res[v][i].p99))
		}
	}
	dur := func(f float64) string { return fmtDur(time.Duration(f)) }
	r50 := Row{
		Key: "rpc", Name: "RPC 1 caller, p50 latency",
		NotifierVal: median(p50[variantNotifier]), RawVal: median(p50[variantRaw]), RatioVal: median(ntRatio),
		HasRaw: true, Target: 1.25, TargetKind: atMost,
	}
	r50.Notifier, r50.Raw = dur(r50.NotifierVal), dur(r50.RawVal)
	r50.Ratio = fmt.Sprintf("%.2f×", r50.RatioVal)
	r50.Notes = fmt.Sprintf("micro p50 %s (%.2f× raw); runs %s; n=%d sequential calls",
		dur(median(p50[variantMicro])), median(microRatio), fmtList(ntRatio, "%.2f"), n)
	r99 := Row{
		Key: "rpc", Name: "RPC 1 caller, p99 latency",
		NotifierVal: median(p99[variantNotifier]), RawVal: median(p99[variantRaw]), RatioVal: median(nt99Ratio),
		HasRaw: true,
	}
	r99.Notifier, r99.Raw = dur(r99.NotifierVal), dur(r99.RawVal)
	r99.Ratio = fmt.Sprintf("%.2f×", r99.RatioVal)
	r99.Notes = fmt.Sprintf("micro p99 %s", dur(median(p99[variantMicro])))
	return []Row{r50, r99}, nil
}

const rpcWorkers = 8

func runRPC8(e *env) ([]Row, error) {
	rs, err := newRPCRigs(e, false)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	n := e.cfg.rpcN
	rates := map[string][]float64{}
	for i := -1; i < e.cfg.runs; i++ {
		for _, v := range rs.variants(max(i, 0)) {
			k := n
			if i < 0 {
				k = max(n/10, 500)
			}
			gcQuiet()
			var d time.Duration
			labeled(v, func() { d, err = benchSenderCallers(rs.rig(v), k, rpcWorkers) })
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v, err)
			}
			rate := float64(k) / d.Seconds()
			e.logf("  %-8s n=%d in %v: %s req/s", v, k, d.Round(time.Microsecond), fmtRate(rate))
			if i >= 0 {
				rates[v] = append(rates[v], rate)
			}
		}
	}
	var ratios []float64
	for i := range e.cfg.runs {
		ratios = append(ratios, safeDiv(rates[variantNotifier][i], rates[variantRaw][i]))
	}
	row := Row{
		Key: "rpc8", Name: "RPC 8 concurrent callers (req/s)",
		NotifierVal: median(rates[variantNotifier]), RawVal: median(rates[variantRaw]), RatioVal: median(ratios),
		HasRaw: true, Target: 0.75, TargetKind: atLeast,
		Notes: fmt.Sprintf("runs %s; %d goroutines sharing one Notifier / one nats.Conn, n=%d calls", fmtList(ratios, "%.2f"), rpcWorkers, n),
	}
	row.Notifier, row.Raw = fmtRate(row.NotifierVal)+"/s", fmtRate(row.RawVal)+"/s"
	row.Ratio = fmt.Sprintf("%.2f", row.RatioVal)
	return []Row{row}, nil
}
