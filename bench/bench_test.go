package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// measureT runs the rows of cfg for t, failing it on an error; the
// harness's log is shown if t fails.
func measureT(t *testing.T, cfg config) []Row {
	t.Helper()
	var logw bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logw.String())
		}
	})
	rows, err := measure(cfg, &logw)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestHarnessShort runs every scenario with a few thousand messages, so the
// harness keeps building and running in CI. It asserts that every row is
// produced with sane numbers, never speed.
func TestHarnessShort(t *testing.T) {
	cfg := shortConfig()
	cfg.runs = 1
	cfg.n = 3_000
	cfg.rpcN = 1_000
	rows := measureT(t, cfg)
	var table bytes.Buffer
	printReport(&table, cfg, rows, 0)
	t.Log("\n" + table.String())

	seen := map[string]int{}
	for _, r := range rows {
		seen[r.Key]++
		if r.Err != nil {
			t.Errorf("%s: %v", r.Name, r.Err)
			continue
		}
		checkValue(t, r.Name+" Notifier", r.NotifierVal, r.mayBeZero)
		if r.HasRaw {
			checkValue(t, r.Name+" raw", r.RawVal, r.mayBeZero)
		}
		if r.Notifier == "" || r.Name == "" {
			t.Errorf("%+v: empty cell", r)
		}
	}
	// The idle row counts the server's messages: the ring probes alone are
	// 4N in and 4N out per second, so in+out lies near 8N, never at 0.
	idle := false
	for _, r := range rows {
		if r.Key == "scale" && strings.Contains(r.Name, "idle server msgs/s") {
			idle = true
			if n := float64(cfg.scaleNodes); r.Err == nil && (r.NotifierVal < 4*n || r.NotifierVal > 12*n) {
				t.Errorf("%s = %.0f msgs/s, want about 8·N = %.0f (server Varz)", r.Name, r.NotifierVal, 8*n)
			}
		}
	}
	if !idle {
		t.Error("no idle-traffic scale row")
	}
	checkScaleRows(t, cfg, rows)
	want := map[string]int{"pub1": 1, "fanout": 1, "slice": 1, "rpc": 2, "rpc8": 1, "allocs": 11, "scale": 10, "big": 3}
	for _, k := range rowKeys() {
		if seen[k] != want[k] {
			t.Errorf("scenario %s: %d rows, want %d", k, seen[k], want[k])
		}
	}
}

// checkScaleRows checks the registration-rate, crash and restart rows: each
// is present, measured (no error) and within bounds that only a broken
// measurement leaves (they are not speed targets).
func checkScaleRows(t *testing.T, cfg config, rows []Row) {
	t.Helper()
	find := func(part string) (Row, bool) {
		for _, r := range rows {
			if r.Key == "scale" && strings.Contains(r.Name, part) {
				return r, true
			}
		}
		t.Errorf("no scale row %q", part)
		return Row{}, false
	}
	bound := cfg.timeout.Seconds()
	for _, part := range []string{"one sequential Subscribe", "registrations from 10 goroutines", "registrations in one Batch().Commit()"} {
		if r, ok := find(part); ok && (r.Err != nil || r.NotifierVal <= 0 || r.NotifierVal >= bound) {
			t.Errorf("%s: %v s (err %v), want in (0, %v s)", r.Name, r.NotifierVal, r.Err, bound)
		}
	}
	// Crash rows: every peer dropped the victim (no "NEVER"), after it
	// failed (> 0) and before the round's bound; the median is at most the max.
	for _, part := range []string{"connection closed without goodbye", "frozen"} {
		r, ok := find(part)
		if !ok {
			continue
		}
		if r.Err != nil || strings.Contains(r.Notes, "NEVER") || r.NotifierVal <= 0 || r.RatioVal >= bound || r.NotifierVal > r.RatioVal {
			t.Errorf("%s: median %v s, max %v s, err %v, notes %q", r.Name, r.NotifierVal, r.RatioVal, r.Err, r.Notes)
		}
	}
	// A frozen peer answers no probe: at least one unanswered probe
	// (Expiry/2 = 0.5 s by default) passes before anyone drops it.
	if r, ok := find("frozen"); ok && r.NotifierVal < 0.25 {
		t.Errorf("%s: dropped after %v s, before any probe could time out", r.Name, r.NotifierVal)
	}
	if r, ok := find("server restart"); ok {
		want := fmt.Sprintf("%d/%d sampled registrations", min(cfg.scaleNodes, restartSample), min(cfg.scaleNodes, restartSample))
		if r.Err != nil || strings.Contains(r.Notes, "NOT RECOVERED") || !strings.Contains(r.Notes, want) || r.NotifierVal <= 0 || r.NotifierVal >= bound {
			t.Errorf("%s: %v s, err %v, notes %q (want %q)", r.Name, r.NotifierVal, r.Err, r.Notes, want)
		}
	}
}

func checkValue(t *testing.T, what string, v float64, mayBeZero bool) {
	t.Helper()
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		t.Errorf("%s = %v", what, v)
	case v < 0, v == 0 && !mayBeZero:
		t.Errorf("%s = %v, want > 0", what, v)
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-short", "-only", "pub1,rpc", "-n", "123"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.short || c.n != 123 || c.runs != 1 || c.rpcN != shortConfig().rpcN || !c.selected("rpc") || c.selected("scale") {
		t.Errorf("config %+v", c)
	}
	if _, err := parseFlags([]string{"-only", "nope"}, io.Discard); err == nil {
		t.Error("-only nope: no error")
	}
}

// --- go test -bench: the same rigs, b.N messages or calls per variant ---

// benchEnv starts a server for one benchmark; -short selects the small
// scale rows.
func benchEnv(b *testing.B) *env {
	b.Helper()
	cfg := defaultConfig()
	if testing.Short() {
		cfg = shortConfig()
	}
	e, err := newEnv(cfg, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.close)
	return e
}

func benchPub(b *testing.B, shape pubShape) {
	for _, v := range []string{variantRaw, variantNotifier} {
		b.Run(v, func(b *testing.B) {
			e := benchEnv(b)
			s := &sink{}
			var rig pubRig
			var err error
			if v == variantRaw {
				rig, err = newRawPubRig(e, shape, s)
			} else {
				rig, err = newNotifierPubRig(e, shape, s)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer rig.close()
			if _, err := measurePub(rig, s, 1000, shape.perMsg(), e.cfg.timeout); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			res, err := measurePub(rig, s, b.N, shape.perMsg(), e.cfg.timeout)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.rate(shape.perMsg()), "msgs/s")
			b.ReportMetric(float64(res.dropped), "drops")
		})
	}
}

func BenchmarkPublish1to1(b *testing.B) { benchPub(b, pubShape{receivers: 1}) }
func BenchmarkFanout10(b *testing.B)    { benchPub(b, pubShape{receivers: 10}) }
func BenchmarkSlice10(b *testing.B)     { benchPub(b, pubShape{receivers: 10, slice: true}) }

func newBenchRPCRig(b *testing.B, e *env, v string) rpcRig {
	b.Helper()
	var r rpcRig
	var err error
	switch v {
	case variantNotifier:
		r, err = newNotifierRPCRig(e)
	case variantMicro:
		r, err = newRawRPCRig(e, true)
	default:
		r, err = newRawRPCRig(e, false)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.close)
	return r
}

func BenchmarkRPC(b *testing.B) {
	for _, v := range []string{variantRaw, variantMicro, variantNotifier} {
		b.Run(v, func(b *testing.B) {
			r := newBenchRPCRig(b, benchEnv(b), v)
			lat := make([]time.Duration, 0, max(b.N, 1000))
			var err error
			if lat, err = benchSenderCallLoop(r, 1000, lat); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			lat, err = benchSenderCallLoop(r, b.N, lat)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			l := summarize(lat)
			b.ReportMetric(float64(l.p50.Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(l.p99.Nanoseconds())/1e3, "p99-µs")
		})
	}
}

func BenchmarkRPC8(b *testing.B) {
	for _, v := range []string{variantRaw, variantNotifier} {
		b.Run(v, func(b *testing.B) {
			r := newBenchRPCRig(b, benchEnv(b), v)
			if _, err := benchSenderCallers(r, 1000, rpcWorkers); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			d, err := benchSenderCallers(r, b.N, rpcWorkers)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/d.Seconds(), "req/s")
		})
	}
}

// BenchmarkScale runs the scale rows once per iteration; use -benchtime 1x.
func BenchmarkScale(b *testing.B) {
	e := benchEnv(b)
	for range b.N {
		rows, err := runScale(e)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rows[1].NotifierVal, "join-s")
		b.ReportMetric(rows[2].NotifierVal, "B/dir-entry")
	}
}

// BenchmarkBig runs the big rows once per iteration; use -benchtime 1x.
func BenchmarkBig(b *testing.B) {
	e := benchEnv(b)
	for range b.N {
		rows, err := runBig(e)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rows[0].NotifierVal, "B/reg-owner")
		b.ReportMetric(rows[1].NotifierVal, "B/reg-peer")
		b.ReportMetric(rows[2].NotifierVal, "ns/lookup-publish")
	}
}

// TestScaleClusterShort runs the scale rows on a 3-server cluster
// (-scale-servers 3) with a small bus: every row measured but the restart
// row, which says it was not, each named for the cluster, and the idle
// traffic that of the clients (summed over the servers, routes left out).
func TestScaleClusterShort(t *testing.T) {
	cfg := shortConfig()
	cfg.runs = 1
	cfg.only = []string{"scale"}
	cfg.servers = 3
	cfg.scaleNodes = 12
	rows := measureT(t, cfg)
	if len(rows) != 10 {
		t.Fatalf("%d rows, want 10", len(rows))
	}
	for _, r := range rows {
		if !strings.Contains(r.Name, "3 servers") {
			t.Errorf("row %q does not name the cluster", r.Name)
		}
		if r.Err != nil {
			t.Errorf("%s: %v", r.Name, r.Err)
		}
		if strings.Contains(r.Name, "restart") {
			if !strings.Contains(r.Notes, "not measured on a cluster") {
				t.Errorf("restart row on a cluster: %q", r.Notes)
			}
			continue
		}
		if strings.Contains(r.Name, "idle server msgs/s") {
			// The clients' traffic, routes left out: 8N, as on one server.
			if n := float64(cfg.scaleNodes); r.NotifierVal < 4*n || r.NotifierVal > 12*n {
				t.Errorf("%s = %.0f msgs/s, want about 8·N = %.0f", r.Name, r.NotifierVal, 8*n)
			}
		}
	}
}
