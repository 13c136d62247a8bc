package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

// config is what the flags select.
type config struct {
	n           int           // messages per publish round
	rpcN        int           // calls per RPC round
	runs        int           // measured runs per row; the median is reported
	short       bool          // small sizes, for CI
	only        []string      // row keys; empty means all
	queue       int           // WithQueueSize of receiving Notifiers; 0 = library default
	scaleNodes  int           // Notifiers on the bus in the scale row
	scaleRegs   int           // registrations per Notifier in the scale row
	bigRegs     int           // registrations of the one Notifier in the big row
	scalePar    int           // Notifiers registering at once in the scale row; 0 = all
	connectPar  int           // Connects at once while building the scale bus
	setupBatch  bool          // the scale bus's registrations in one Batch per Notifier
	servers     int           // servers of the scale bus: 1, or a cluster of this many
	scaleHeap   bool          // measure the scale bus's heap (forced collections)
	heapOnce    bool          // one collection per heap reading, not until it settles
	maxHeap     uint64        // live heap (as of the last GC) at which the scale row aborts
	timeout     time.Duration // bound of one measured round
	verbose     bool          // library warnings to stderr
	info        bool          // and its info lines
	cpuProfile  string
	rowsProfile string // directory of the registration rows' own profiles
	memProfile  string
	args        []string // the command line, for the report
}

// defaultConfig is the full run.
func defaultConfig() config {
	return config{
		n:          200_000,
		rpcN:       20_000,
		runs:       3,
		scaleNodes: 200,
		scaleRegs:  50,
		bigRegs:    100_000,
		scalePar:   10,
		connectPar: 1,
		servers:    1,
		scaleHeap:  true,
		maxHeap:    2560 << 20,
		timeout:    60 * time.Second,
	}
}

// shortConfig is -short: a few thousand messages, a small bus.
func shortConfig() config {
	c := defaultConfig()
	c.short = true
	c.n = 5_000
	c.rpcN = 2_000
	c.scaleNodes = 20
	c.scaleRegs = 10
	c.bigRegs = 10_000
	c.timeout = 30 * time.Second
	return c
}

func (c config) selected(key string) bool {
	return len(c.only) == 0 || slices.Contains(c.only, key)
}

// parseFlags parses args into a config.
func parseFlags(args []string, errOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	d := defaultConfig()
	s := shortConfig()
	n := fs.Int("n", 0, fmt.Sprintf("messages per publish round (default %d, -short %d)", d.n, s.n))
	rpcN := fs.Int("rpc-n", 0, fmt.Sprintf("calls per RPC round (default %d, -short %d)", d.rpcN, s.rpcN))
	runs := fs.Int("runs", 0, "measured runs per row; the median ratio is reported (default 3, -short 1)")
	short := fs.Bool("short", false, "a few thousand messages and a small bus, for CI")
	only := fs.String("only", "", "comma-separated rows: "+strings.Join(rowKeys(), ","))
	queue := fs.Int("queue", 0, "WithQueueSize of the receiving Notifiers (0: library default)")
	nodes := fs.Int("scale-nodes", 0, fmt.Sprintf("Notifiers on the bus in the scale row (default %d, -short %d)", d.scaleNodes, s.scaleNodes))
	regs := fs.Int("scale-regs", 0, fmt.Sprintf("registrations per Notifier in the scale row (default %d, -short %d)", d.scaleRegs, s.scaleRegs))
	big := fs.Int("big-regs", 0, fmt.Sprintf("registrations of the one Notifier in the big row (default %d, -short %d)", d.bigRegs, s.bigRegs))
	par := fs.Int("scale-par", d.scalePar, "Notifiers registering at once in the scale row; 0 means all at once")
	cpar := fs.Int("scale-connect-par", d.connectPar, "Notifiers connecting at once while building the scale bus (1: sequential; 8 builds N=400 and 1000 in bounded time)")
	setupBatch := fs.Bool("scale-setup-batch", false, "register each scale-bus Notifier's registrations in one Batch (default: one call each)")
	scaleHeap := fs.Bool("scale-heap", true, "measure the heap per registration of the scale bus (forced collections, which stall a big bus: false for N = 1,000)")
	heapOnce := fs.Bool("scale-heap-once", false, "with -scale-heap: one collection per heap reading instead of collecting until the heap settles (for N = 1,000, where each collection of the 3-4 GiB heap takes seconds)")
	servers := fs.Int("scale-servers", 1, "servers of the scale bus: 1, or a cluster (testenv.StartCluster) with the Notifiers spread over it; the restart row needs 1")
	maxHeap := fs.Uint64("max-heap-mib", 0, "live heap (MiB, as of the last GC) at which the scale row aborts, protecting the machine (default 2560)")
	timeout := fs.Duration("timeout", 0, "bound of one measured round (default 60s, -short 30s)")
	verbose := fs.Bool("v", false, "log the library's warnings (drops, timeouts) to stderr")
	info := fs.Bool("vv", false, "with -v: the library's info lines too (peers dropped, and why)")
	cpu := fs.String("cpuprofile", "", "write a CPU profile to this file")
	mem := fs.String("memprofile", "", "write an allocation (heap) profile to this file at the end")
	rowsProf := fs.String("scale-rows-profile", "", "write CPU and allocation profiles of the scale row's sequential, 10-goroutine and Batch registrations to this directory (seq.prof, par.prof, bulk.prof, with .heap0 and .heap1 allocation profiles; a forced collection before and after each)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := d
	if *short {
		c = s
		c.runs = 1
	}
	setPos := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	setPos(&c.n, *n)
	setPos(&c.rpcN, *rpcN)
	setPos(&c.runs, *runs)
	setPos(&c.queue, *queue)
	setPos(&c.scaleNodes, *nodes)
	setPos(&c.scaleRegs, *regs)
	setPos(&c.bigRegs, *big)
	c.scalePar = *par
	if *cpar < 1 {
		return config{}, fmt.Errorf("-scale-connect-par %d: want at least 1", *cpar)
	}
	c.connectPar = *cpar
	c.setupBatch = *setupBatch
	if *servers < 1 {
		return config{}, fmt.Errorf("-scale-servers %d: want at least 1", *servers)
	}
	c.servers = *servers
	c.scaleHeap = *scaleHeap
	c.heapOnce = *heapOnce
	if *maxHeap > 0 {
		c.maxHeap = *maxHeap << 20
	}
	if *timeout > 0 {
		c.timeout = *timeout
	}
	c.verbose = *verbose || *info
	c.info = *info
	c.cpuProfile, c.memProfile = *cpu, *mem
	c.rowsProfile = *rowsProf
	c.args = args
	if *only != "" {
		for _, k := range strings.Split(*only, ",") {
			k = strings.TrimSpace(k)
			if !slices.Contains(rowKeys(), k) {
				return config{}, fmt.Errorf("-only: unknown row %q (rows: %s)", k, strings.Join(rowKeys(), ","))
			}
			c.only = append(c.only, k)
		}
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run measures the selected rows and prints the table to out; progress goes
// to logw.
func run(cfg config, out, logw io.Writer) error {
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	rows, err := measure(cfg, logw)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if cfg.memProfile != "" {
		if err := writeMemProfile(cfg.memProfile); err != nil {
			return err
		}
	}
	printReport(out, cfg, rows, elapsed)
	return nil
}

func writeMemProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// measure starts the server and runs every selected scenario. A failing
// scenario yields an error row; the others still run.
func measure(cfg config, logw io.Writer) ([]Row, error) {
	e, err := newEnv(cfg, logw)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var rows []Row
	for _, sc := range scenarios() {
		if !cfg.selected(sc.key) {
			continue
		}
		e.logf("== %s", sc.key)
		t := time.Now()
		got, err := sc.run(e)
		if err != nil {
			e.logf("%s failed: %v", sc.key, err)
			got = append(got, Row{Key: sc.key, Name: sc.name, Err: err})
		}
		e.logf("%s done in %v (process peak RSS so far %s)", sc.key, time.Since(t).Round(time.Millisecond), fmtBytes(float64(peakRSS())))
		rows = append(rows, got...)
	}
	return rows, nil
}
