package leaktest

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// parked blocks until release is closed; its name marks it in stacks.
func parked(release <-chan struct{}, started chan<- struct{}) {
	close(started)
	<-release
}

func startParked(t *testing.T) (release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	started := make(chan struct{})
	go parked(release, started)
	<-started
	return release
}

func find(gs []Goroutine, fn string) (Goroutine, bool) {
	for _, g := range gs {
		if strings.Contains(g.Stack, fn) {
			return g, true
		}
	}
	return Goroutine{}, false
}

func TestExtraAndWait(t *testing.T) {
	s := Take()
	if extra := s.Extra(); len(extra) != 0 {
		t.Fatalf("extra goroutines right after Take: %s", Report(extra, 0))
	}
	release := startParked(t)
	extra := s.Extra()
	g, ok := find(extra, "leaktest.parked")
	if !ok || len(extra) != 1 {
		t.Fatalf("Extra after starting one goroutine: %s", Report(extra, 0))
	}
	if g.ID == 0 || g.State != "chan receive" || !strings.Contains(g.Stack, "leaktest_test.go:") {
		t.Errorf("parsed %+v", g)
	}
	// Still running at the deadline: reported, after waiting for it.
	start := time.Now()
	if left := s.Wait(start.Add(20 * time.Millisecond)); len(left) != 1 || left[0].ID != g.ID {
		t.Errorf("Wait with the goroutine blocked: %s", Report(left, 0))
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("Wait returned after %v, before its deadline", waited)
	}
	// Released: Wait sees it end.
	close(release)
	if left := s.Wait(time.Now().Add(5 * time.Second)); len(left) != 0 {
		t.Errorf("Wait after release: %s", Report(left, 0))
	}
}

// TestWaitForSlowExit: a goroutine that ends only after Wait has looked
// and found it running is not reported: Wait polls until it is gone.
func TestWaitForSlowExit(t *testing.T) {
	s := Take(Ignore("leaktest.releaseWhenWaiting"))
	release := startParked(t)
	go releaseWhenWaiting(release)
	start := time.Now()
	if left := s.Wait(start.Add(10 * time.Second)); len(left) != 0 {
		t.Fatalf("Wait reported a goroutine that ended before the deadline: %s", Report(left, 0))
	}
	if waited := time.Since(start); waited >= 10*time.Second {
		t.Errorf("Wait took %v: it timed out instead of seeing the goroutine end", waited)
	}
}

// releaseWhenWaiting closes release once a goroutine sleeps in
// Snapshot.Wait between two polls, that is after Wait has seen the parked
// goroutine still running. It gives up after a few seconds (then closes
// release anyway; the test fails on the timing).
func releaseWhenWaiting(release chan struct{}) {
	defer close(release)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		for _, g := range All() {
			if strings.Contains(g.Stack, "leaktest.Snapshot.Wait(") && g.State == "chan receive" {
				return
			}
		}
		runtime.Gosched()
	}
}

// recorder is a testing.TB that keeps its errors instead of failing.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, strings.TrimSpace(strings.ReplaceAll(format, "%s", "")+sprint(args)))
}

func sprint(args []any) string {
	var b strings.Builder
	for _, a := range args {
		if s, ok := a.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

func (r *recorder) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// runChecked runs body as a subtest with Check on a recorder and returns
// what the check reported when the subtest ended.
func runChecked(t *testing.T, body func(t *testing.T), opts ...Option) []string {
	t.Helper()
	var rec *recorder
	t.Run("checked", func(t *testing.T) {
		rec = &recorder{TB: t}
		Check(rec, opts...)
		body(t)
	})
	return rec.errors()
}

func TestCheckReportsLeak(t *testing.T) {
	var release chan struct{}
	errs := runChecked(t, func(t *testing.T) { release = startParked(t) }, Timeout(30*time.Millisecond))
	close(release)
	if len(errs) != 1 || !strings.Contains(errs[0], "1 goroutine(s) still running 30ms") || !strings.Contains(errs[0], "leaktest.parked") {
		t.Errorf("Check reported %q, want the parked goroutine", errs)
	}
}

func TestCheckCleanAfterCleanup(t *testing.T) {
	// The goroutine ends in a cleanup registered after Check: it runs
	// first, so Check sees nothing.
	errs := runChecked(t, func(t *testing.T) {
		release := startParked(t)
		t.Cleanup(func() { close(release) })
	}, Timeout(5*time.Second))
	if len(errs) != 0 {
		t.Errorf("Check reported %q, want nothing", errs)
	}
}

func TestCheckIgnore(t *testing.T) {
	var release chan struct{}
	errs := runChecked(t, func(t *testing.T) { release = startParked(t) }, Timeout(10*time.Millisecond), Ignore("leaktest.parked"))
	close(release)
	if len(errs) != 0 {
		t.Errorf("Check reported %q for an ignored goroutine", errs)
	}
}

func TestCheckOnly(t *testing.T) {
	// parked lives in a _test.go file: Only never counts such frames.
	var release chan struct{}
	errs := runChecked(t, func(t *testing.T) { release = startParked(t) }, Timeout(10*time.Millisecond), Only("github.com/natsnotifier/notifier/internal/leaktest."))
	close(release)
	if len(errs) != 0 {
		t.Errorf("Check with Only reported %q for a goroutine of test code", errs)
	}
}

func TestHasFrame(t *testing.T) {
	stack := "goroutine 9 [select]:\n" +
		"github.com/natsnotifier/notifier/bus.(*Directory).run(0xc000010000)\n" +
		"\t/src/bus/directory.go:120 +0x1d\n" +
		"created by github.com/natsnotifier/notifier.New in goroutine 7\n" +
		"\t/src/adapter.go:80 +0x2a"
	testOnly := "goroutine 10 [chan receive]:\n" +
		"github.com/natsnotifier/notifier/bus.helper()\n" +
		"\t/src/bus/directory_test.go:12 +0x1d\n" +
		"created by github.com/natsnotifier/notifier/bus.TestX in goroutine 7\n" +
		"\t/src/bus/directory_test.go:30 +0x2a"
	for _, tt := range []struct {
		stack  string
		prefix string
		want   bool
	}{
		{stack, "github.com/natsnotifier/notifier/bus.", true},
		{stack, "github.com/natsnotifier/notifier.", false}, // only in "created by"
		{stack, "github.com/natsnotifier/notifier/match.", false},
		{testOnly, "github.com/natsnotifier/notifier/bus.", false}, // a _test.go frame
	} {
		if got := hasFrame(tt.stack, []string{tt.prefix}); got != tt.want {
			t.Errorf("hasFrame(%q, %q) = %v, want %v", tt.stack, tt.prefix, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		entry string
		id    uint64
		state string
		ok    bool
	}{
		{"goroutine 1 [running]:\nmain.main()", 1, "running", true},
		{"goroutine 42 [IO wait, 3 minutes]:\n", 42, "IO wait, 3 minutes", true},
		{"goroutine x [running]:", 0, "", false},
		{"not a goroutine", 0, "", false},
		{"goroutine 7", 0, "", false},
	} {
		g, ok := parse(tt.entry)
		if ok != tt.ok || g.ID != tt.id || g.State != tt.state {
			t.Errorf("parse(%q) = %+v, %v; want id %d state %q, %v", tt.entry, g, ok, tt.id, tt.state, tt.ok)
		}
	}
}

func TestCreatedBy(t *testing.T) {
	stack := "goroutine 9 [select]:\n" +
		"github.com/natsnotifier/notifier.(*Notifier).RPC(0xc000010000)\n" +
		"\t/src/rpc_client.go:120 +0x1d\n" +
		"created by testing.(*T).Run in goroutine 7\n" +
		"\t/go/src/testing/testing.go:1800 +0x2a"
	for _, tt := range []struct {
		prefix string
		want   bool
	}{
		{"testing.", true},
		{"github.com/natsnotifier/notifier_test.", false},
		{"github.com/natsnotifier/notifier.", false}, // a frame, not the creator
	} {
		if got := createdBy(stack, []string{tt.prefix}); got != tt.want {
			t.Errorf("createdBy(%q) = %v, want %v", tt.prefix, got, tt.want)
		}
	}
	if createdBy("goroutine 1 [running]:\nmain.main()\n\t/src/main.go:3 +0x1", []string{"main."}) {
		t.Error("createdBy true for a goroutine without a creator")
	}
}

// TestRunningAndNone: Running sees a goroutine however old, NotCreatedBy
// hides it by its creator, and None waits until it has ended.
func TestRunningAndNone(t *testing.T) {
	release := startParked(t) // started before any Running call
	if _, ok := find(Running(), "leaktest.parked"); !ok {
		t.Fatal("Running does not list a parked goroutine")
	}
	if _, ok := find(Running(NotCreatedBy("github.com/natsnotifier/notifier/internal/leaktest.startParked")), "leaktest.parked"); ok {
		t.Error("NotCreatedBy did not hide the goroutine by its creator")
	}
	start := time.Now()
	if left := None(Timeout(20*time.Millisecond), Ignore("leaktest.TestRunningAndNone", "testing.")); len(left) == 0 {
		t.Error("None reported nothing with a goroutine parked")
	} else if _, ok := find(left, "leaktest.parked"); !ok {
		t.Errorf("None left %s without the parked goroutine", Report(left, 0))
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Errorf("None returned after %v, before its timeout", waited)
	}
	close(release)
	if left := None(Ignore("leaktest.TestRunningAndNone", "testing.", "runtime.goexit")); len(left) != 0 {
		if _, ok := find(left, "leaktest.parked"); ok {
			t.Errorf("None after release still lists the parked goroutine: %s", Report(left, 0))
		}
	}
}
