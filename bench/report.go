package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// targetKind says how a row's ratio compares with its target.
type targetKind int

const (
	noTarget targetKind = iota
	atLeast             // ratio >= target
	atMost              // ratio <= target
	below               // ratio < target
)

// Row is one line of the table.
type Row struct {
	Key  string // scenario key (-only)
	Name string

	Notifier, Raw, Ratio string // formatted cells
	Notes                string

	// Numbers behind the cells. HasRaw is false for rows without a raw
	// counterpart (scale); their ratio is the Notifier value itself.
	NotifierVal, RawVal, RatioVal float64
	HasRaw                        bool
	mayBeZero                     bool // a zero value is a sane result (allocation classes)

	Target     float64
	TargetKind targetKind
	TargetText string // overrides the generated target cell

	Err error // the scenario failed
}

// met reports whether the row meets its target, and whether it has one.
func (r Row) met() (ok, has bool) {
	switch r.TargetKind {
	case atLeast:
		return r.RatioVal >= r.Target, true
	case atMost:
		return r.RatioVal <= r.Target, true
	case below:
		return r.RatioVal < r.Target, true
	}
	return false, false
}

func (r Row) targetCell() string {
	if r.TargetText != "" {
		return r.TargetText
	}
	switch r.TargetKind {
	case atLeast:
		return fmt.Sprintf("≥ %.2f", r.Target)
	case atMost:
		return fmt.Sprintf("≤ %.2f×", r.Target)
	case below:
		return fmt.Sprintf("< %g", r.Target)
	}
	return ""
}

// scenario is one selectable group of rows.
type scenario struct {
	key, name string
	run       func(*env) ([]Row, error)
}

func scenarios() []scenario {
	return []scenario{
		{"pub1", "publish 1→1", runPub1},
		{"fanout", "fan-out 1→10", runFanout},
		{"slice", "slice 1→one-of-10", runSlice},
		{"rpc", "RPC 1 caller", runRPC},
		{"rpc8", "RPC 8 callers", runRPC8},
		{"allocs", "allocations", runAllocs},
		{"scale", "scale: join", runScale},
		{"big", "one Notifier, many registrations", runBig},
	}
}

func rowKeys() []string {
	var keys []string
	for _, s := range scenarios() {
		keys = append(keys, s.key)
	}
	return keys
}

// printReport writes the machine, the settings and the table as markdown.
func printReport(w io.Writer, cfg config, rows []Row, elapsed time.Duration) {
	fmt.Fprintf(w, "## Notifier vs raw nats.go\n\n")
	fmt.Fprintf(w, "- command: `%s`\n", strings.Join(append([]string{"go run ./bench"}, cfg.args...), " "))
	fmt.Fprintf(w, "- machine: %s, %d CPUs, GOMAXPROCS=%d, %s/%s\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "- software: %s, nats.go %s, nats-server %s (embedded, one server, loopback TCP)\n", runtime.Version(), nats.Version, server.VERSION)
	q := "library default"
	if cfg.queue > 0 {
		q = fmt.Sprint(cfg.queue)
	}
	fmt.Fprintf(w, "- settings: %d msgs per publish round, %d calls per RPC round, median of %d runs, payload %d B (Notifier: []byte, msgpack adds 2 B), receiver queue %s; scale %d×%d, big %d registrations\n",
		cfg.n, cfg.rpcN, cfg.runs, payloadSize, q, cfg.scaleNodes, cfg.scaleRegs, cfg.bigRegs)
	fmt.Fprintf(w, "- total time: %v\n\n", elapsed.Round(100*time.Millisecond))
	fmt.Fprintln(w, "| row | Notifier | raw | ratio | target | met | notes |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---|---|")
	for _, r := range rows {
		if r.Err != nil {
			fmt.Fprintf(w, "| %s | – | – | – | – | ERROR | %s |\n", r.Name, cell(r.Err.Error()))
			continue
		}
		met := ""
		if ok, has := r.met(); has {
			met = "no"
			if ok {
				met = "yes"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n",
			r.Name, cell(r.Notifier), cell(r.Raw), cell(r.Ratio), r.targetCell(), met, cell(r.Notes))
	}
}

func cell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// cpuModel reads the CPU model from /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// gcQuiet collects garbage before a round, so that one round's garbage does
// not slow the next.
func gcQuiet() { runtime.GC() }

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func fmtList(v []float64, f string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(f, x)
	}
	return strings.Join(parts, " / ")
}

// fmtRate renders a count per second with k/M units.
func fmtRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2f M", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1f k", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1f µs", float64(d)/1e3)
}

func fmtBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 10<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
