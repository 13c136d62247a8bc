package directory

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/leaktest"
	"github.com/natsnotifier/notifier/testenv"
)

// Directory settings of the tests: fast heartbeats, short requests.
const (
	testHeartbeat = 50 * time.Millisecond
	testTimeout   = time.Second
	testExpiry    = DefaultExpiryBeats * testHeartbeat
	waitTimeout   = 5 * time.Second // bound of every wait for an event that must happen
)

var testSubjects = bus.Subjects{Prefix: "t"}

// startServer runs a server for t and, after everything else t cleans up,
// checks that no goroutine of the package is left.
func startServer(t *testing.T) *testenv.Server {
	t.Helper()
	t.Cleanup(func() { checkNoLeaks(t) })
	return testenv.Run(t)
}

// fastReconnect makes a connection retry every 10 ms, forever.
func fastReconnect() []nats.Option {
	return []nats.Option{nats.ReconnectWait(10 * time.Millisecond), nats.ReconnectJitter(0, 0), nats.MaxReconnects(-1)}
}

// join joins node to the bus over nc with the test settings, changed by
// mod, and closes the directory when t ends.
func join(t *testing.T, nc *nats.Conn, node string, mod ...func(*Options)) *Directory {
	t.Helper()
	o := Options{Conn: nc, Subjects: testSubjects, Node: node, Heartbeat: testHeartbeat, Timeout: testTimeout}
	for _, m := range mod {
		m(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	d, err := Join(ctx, o)
	if err != nil {
		t.Fatalf("Join(%s): %v", node, err)
	}
	t.Cleanup(d.Close)
	return d
}

func withExpiry(e time.Duration) func(*Options) { return func(o *Options) { o.Expiry = e } }

func withHeartbeat(h time.Duration) func(*Options) { return func(o *Options) { o.Heartbeat = h } }

func withLogger(l *slog.Logger) func(*Options) { return func(o *Options) { o.Logger = l } }

func withTimeout(d time.Duration) func(*Options) { return func(o *Options) { o.Timeout = d } }

// reg is a registration of object "o", cmd "c" matching every id.
func reg(id uint64) Reg { return Reg{ID: id, Kind: bus.KindPub, Object: "o", Cmd: "c"} }

// peers returns d's peers, sorted; nil for none.
func peers(d *Directory) []string {
	p := d.Peers()
	if len(p) == 0 {
		return nil
	}
	slices.Sort(p)
	return p
}

// ids returns the sorted IDs of node's registrations of kind k that d
// finds for ("o", "c", 1), full and slices; nil for none.
func ids(d *Directory, k bus.Kind, node string) []uint64 {
	full, sl := d.Lookup(k, "o", "c", 1, nil, nil)
	var out []uint64
	for _, e := range append(full, sl...) {
		if e.Key.Node == node {
			out = append(out, e.Key.ID)
		}
	}
	slices.Sort(out)
	return out
}

func list(v ...uint64) []uint64 { return v }

// announce announces a change of d and waits until the peers applied it.
func announce(t *testing.T, d *Directory, puts []Reg, dels []uint64) {
	t.Helper()
	if err := d.Announce(puts, dels).Wait(waitTimeout); err != nil {
		t.Fatalf("%s: Announce(%v, %v).Wait: %v", d.Node(), puts, dels, err)
	}
}

// poll reports whether cond holds within timeout, checking every 2 ms.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		<-tick.C
	}
	return true
}

// eventually fails t if cond does not hold within timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("not within %v: "+what, append([]any{timeout}, args...)...)
	}
}

// checkNoLeaks fails t unless, within a few seconds, no goroutine runs
// code of the package's non-test files.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	left := leaktest.None(leaktest.Only("github.com/natsnotifier/notifier/internal/directory."), leaktest.Timeout(waitTimeout))
	if len(left) > 0 {
		t.Errorf("goroutines of the directory: %s", leaktest.Report(left, waitTimeout))
	}
}

// logRecorder is a slog.Handler counting messages.
type logRecorder struct {
	mu   sync.Mutex
	msgs map[string]int
}

func newLogRecorder() *logRecorder { return &logRecorder{msgs: make(map[string]int)} }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs[rec.Message]++
	r.mu.Unlock()
	return nil
}

func (r *logRecorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[msg]
}

// TestLeakCheckSeesDirectory: the filter of checkNoLeaks counts a Directory
// that is still open and nothing once it is closed, so the check cannot
// pass vacuously.
func TestLeakCheckSeesDirectory(t *testing.T) {
	srv := startServer(t)
	d := join(t, testenv.Connect(t, srv.URL()), "n1")
	only := leaktest.Only("github.com/natsnotifier/notifier/internal/directory.")
	if len(leaktest.Running(only)) == 0 {
		t.Fatal("no goroutine of an open Directory counted")
	}
	d.Close()
	if left := leaktest.None(only, leaktest.Timeout(waitTimeout)); len(left) > 0 {
		t.Errorf("after Close: %s", leaktest.Report(left, waitTimeout))
	}
}
