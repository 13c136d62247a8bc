package notifier_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/internal/leaktest"
)

// note is one Notify call as a recorder saw it.
type note struct {
	Object string
	ID     int64
	Cmd    string
	Args   notifier.Args
}

// recorder is a Subscriber that records every Notify call. It is safe for
// concurrent use and always used by pointer (destinations are compared by
// identity).
type recorder struct {
	mu    sync.Mutex
	notes []note
}

var _ notifier.Subscriber = (*recorder)(nil)

func (r *recorder) Notify(object string, id int64, cmd string, args notifier.Args) {
	r.mu.Lock()
	r.notes = append(r.notes, note{Object: object, ID: id, Cmd: cmd, Args: args})
	r.mu.Unlock()
}

// Len returns how many notifications arrived.
func (r *recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.notes)
}

// Notes returns a copy of the notifications received so far.
func (r *recorder) Notes() []note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]note(nil), r.notes...)
}

// IDs returns the ids of the notifications received so far, in arrival order.
func (r *recorder) IDs() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int64, len(r.notes))
	for i, n := range r.notes {
		ids[i] = n.ID
	}
	return ids
}

// Count returns how many notifications with this id arrived.
func (r *recorder) Count(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := 0
	for _, n := range r.notes {
		if n.ID == id {
			c++
		}
	}
	return c
}

// Has reports whether a notification with this id arrived.
func (r *recorder) Has(id int64) bool { return r.Count(id) > 0 }

// waitLen waits until at least n notifications arrived, failing t after
// timeout.
func (r *recorder) waitLen(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() bool { return r.Len() >= n }, "recorder: want %d notifications", n)
}

// pollEvery is how often the polling helpers check their condition.
const pollEvery = 2 * time.Millisecond

// poll checks cond every few milliseconds until it holds or timeout passes,
// and reports whether it held.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return cond()
		}
		<-tick.C
	}
}

// eventually fails t if cond does not hold within timeout. what (a format
// string with args) says what was awaited.
//
// msg, if given, is a format and its arguments saying what was waited for.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, msg ...any) {
	t.Helper()
	if poll(timeout, cond) {
		return
	}
	what := "condition not met"
	if len(msg) > 0 {
		if f, ok := msg[0].(string); ok {
			what = fmt.Sprintf(f, msg[1:]...)
		}
	}
	t.Fatalf("not within %v: %s", timeout, what)
}

// must fails t on a non-nil err.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// connect connects a Notifier to url and closes it when t ends. It fails t
// if Connect fails.
func connect(t testing.TB, url string, opts ...notifier.Option) *notifier.Notifier {
	t.Helper()
	n, err := notifier.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// libGoroutines are the goroutines running code of the library (the
// "created by" line aside) that the tests did not start themselves.
var libGoroutines = []leaktest.Option{
	leaktest.Only(
		"github.com/natsnotifier/notifier.",
		"github.com/natsnotifier/notifier/bus.",
		"github.com/natsnotifier/notifier/internal/",
		"github.com/natsnotifier/notifier/match.",
	),
	leaktest.NotCreatedBy("testing.", "github.com/natsnotifier/notifier_test."),
}

// checkNoLeaks fails t unless, within a few seconds, no goroutine runs code
// of the library except those the tests started themselves. Call it after
// every Notifier of the test is closed; do not use it in parallel tests.
func checkNoLeaks(t testing.TB) {
	t.Helper()
	if left := leaktest.None(libGoroutines...); len(left) > 0 {
		t.Fatalf("goroutines of the library: %s", leaktest.Report(left, leaktest.DefaultTimeout))
	}
}

// fmtIDs renders ids for failure messages, shortening long lists.
func fmtIDs(ids []int64) string {
	if len(ids) > 20 {
		return fmt.Sprintf("%v ... (%d in all)", ids[:20], len(ids))
	}
	return fmt.Sprint(ids)
}

// lazyIDs prints a recorder's ids when formatted, for failure messages
// built before the wait ends.
type lazyIDs struct{ r *recorder }

func (l lazyIDs) String() string { return fmtIDs(l.r.IDs()) }
