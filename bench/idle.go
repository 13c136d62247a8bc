package main

import (
	"fmt"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// serverCounts are the embedded server's message and byte counters.
type serverCounts struct{ inMsgs, outMsgs, inBytes, outBytes int64 }

// servers are the scale bus's servers: the cluster, or the one server.
func (e *env) servers() []*testenv.Server {
	if len(e.cluster) == 0 {
		return []*testenv.Server{e.srv}
	}
	return e.cluster
}

// readCounts reads the counters from the server's Varz. On a cluster they
// are summed over the servers, less what the routes carried (Routez): the
// traffic of the clients, each message counted once into the cluster and
// once out of it per receiving client, as on one server.
func (e *env) readCounts() (serverCounts, error) {
	var c serverCounts
	for _, s := range e.servers() {
		v, err := s.Server().Varz(nil)
		if err != nil {
			return serverCounts{}, err
		}
		c.inMsgs, c.outMsgs, c.inBytes, c.outBytes = c.inMsgs+v.InMsgs, c.outMsgs+v.OutMsgs, c.inBytes+v.InBytes, c.outBytes+v.OutBytes
		if len(e.cluster) == 0 {
			continue
		}
		rz, err := s.Server().Routez(nil)
		if err != nil {
			return serverCounts{}, err
		}
		for _, r := range rz.Routes {
			c.inMsgs, c.outMsgs, c.inBytes, c.outBytes = c.inMsgs-r.InMsgs, c.outMsgs-r.OutMsgs, c.inBytes-r.InBytes, c.outBytes-r.OutBytes
		}
	}
	return c, nil
}

// waitPeers waits until every Notifier of ns knows len(ns)-1 peers (the
// bus has settled) or until deadline; it returns how many had.
func waitPeers(ns []*notifier.Notifier, deadline time.Time) int {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := 0
		for _, n := range ns {
			if n.Stats().Peers >= len(ns)-1 {
				ok++
			}
		}
		if ok == len(ns) || time.Now().After(deadline) {
			return ok
		}
		<-tick.C
	}
}

// idleTrafficWindow is the measured window: several heartbeat periods (1 s).
func (e *env) idleTrafficWindow() time.Duration {
	if e.cfg.short {
		return 3 * time.Second
	}
	return 5 * time.Second
}

// idleRow measures the server's traffic while the bus of ns is idle: the
// Varz deltas over a window of several heartbeat periods, once every
// Notifier knows all others. The target is in+out ≤ 10·N messages/s.
func idleRow(e *env, ns []*notifier.Notifier, regs int) Row {
	nodes := len(ns)
	row := Row{
		Key:        "scale",
		Name:       fmt.Sprintf("scale %d×%d: idle server msgs/s in+out", nodes, regs),
		Target:     float64(10 * nodes),
		TargetKind: atMost,
		TargetText: fmt.Sprintf("≤ 10·N = %d", 10*nodes),
	}
	settled := waitPeers(ns, time.Now().Add(e.cfg.timeout))
	// Let in-flight registration confirmations and repairs pass.
	quiet := time.NewTimer(2 * time.Second)
	<-quiet.C
	c0, err := e.readCounts()
	if err != nil {
		row.Err = err
		return row
	}
	t0 := time.Now()
	win := time.NewTimer(e.idleTrafficWindow())
	<-win.C
	c1, err := e.readCounts()
	if err != nil {
		row.Err = err
		return row
	}
	sec := time.Since(t0).Seconds()
	in, out := float64(c1.inMsgs-c0.inMsgs)/sec, float64(c1.outMsgs-c0.outMsgs)/sec
	bin, bout := float64(c1.inBytes-c0.inBytes)/sec, float64(c1.outBytes-c0.outBytes)/sec
	row.NotifierVal, row.RatioVal = in+out, in+out
	row.Notifier, row.Raw, row.Ratio = fmt.Sprintf("%.0f", in+out), "–", fmt.Sprintf("%.0f", in+out)
	row.Notes = fmt.Sprintf("server Varz over %.1f s: %.0f msgs/s in, %.0f out (%.2f·N and %.2f·N; protocol: 4N each), %s/s in, %s/s out (%.0f B/s per Notifier each way); %d/%d Notifiers knew all %d peers",
		sec, in, out, in/float64(nodes), out/float64(nodes), fmtBytes(bin), fmtBytes(bout), (bin+bout)/2/float64(nodes), settled, nodes, nodes-1)
	if len(e.cluster) > 0 {
		row.Notes = fmt.Sprintf("%d servers' Varz summed, less their routes' counts (Routez): ", len(e.cluster)) + row.Notes
	}
	if settled < nodes {
		row.Notes += "; BUS NOT SETTLED"
		row.RatioVal = row.Target + 1
	}
	return row
}
