// Package leaktest finds goroutines a test leaves behind.
//
// [Check] records the goroutines running when it is called and, when the
// test ends (after the cleanups registered later, such as closing a
// Notifier), waits with a deadline until every goroutine started since has
// ended. The ones still running fail the test, with their stacks. Waiting
// polls (1 ms, doubling to 50 ms): a goroutine that is on its way out is
// not a leak.
//
// Goroutines are told apart by id, which the runtime never reuses, so
// goroutines that ran before Check are never reported. Tests that run in
// parallel (t.Parallel) start goroutines the check would see: restrict it
// with [Only] to the packages under test, or do not use it there.
//
// The package is for this module's tests only; it imports nothing but the
// standard library.
package leaktest

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultTimeout is how long Check waits for goroutines to end.
const DefaultTimeout = 5 * time.Second

// Poll intervals of Wait.
const (
	firstPoll = time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// defaultIgnore are goroutines the standard library starts once and keeps
// for the life of the process: never a leak of one test.
var defaultIgnore = []string{
	"os/signal.signal_recv", // signal.Notify's loop
	"os/signal.loop",
	"runtime.ensureSigM",
}

// Option changes what Check and Take look at.
type Option func(*config)

type config struct {
	timeout   time.Duration
	ignore    []string // substrings of stacks to skip
	only      []string // function prefixes of goroutines to consider
	createdBy []string // function prefixes of creators to skip
}

func newConfig(opts []Option) config {
	c := config{timeout: DefaultTimeout}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Timeout sets how long Check waits for the goroutines to end. Default:
// DefaultTimeout.
func Timeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// Ignore skips goroutines whose stack contains one of substrs (a function
// name, for example). A few goroutines of the standard library that live as
// long as the process are always skipped.
func Ignore(substrs ...string) Option {
	return func(c *config) { c.ignore = append(c.ignore, substrs...) }
}

// Only restricts the check to goroutines with a frame of a function whose
// name starts with one of prefixes ("github.com/natsnotifier/notifier/bus."),
// in a file that is not a _test.go file: the code under test, not the
// test's own helpers.
func Only(prefixes ...string) Option {
	return func(c *config) { c.only = append(c.only, prefixes...) }
}

// NotCreatedBy skips goroutines started by a function whose name begins
// with one of prefixes ("testing.", a test package's name): goroutines a
// test started itself, which may be blocked in the code under test.
func NotCreatedBy(prefixes ...string) Option {
	return func(c *config) { c.createdBy = append(c.createdBy, prefixes...) }
}

// Goroutine is one goroutine as runtime.Stack shows it.
type Goroutine struct {
	ID    uint64
	State string // "chan receive", "select", "IO wait, 2 minutes", ...
	Stack string // the whole entry: header, frames and "created by"
}

// Snapshot is the set of goroutines running when it was taken, with the
// options that filter later comparisons.
type Snapshot struct {
	seen map[uint64]bool
	cfg  config
}

// Take records the goroutines running now.
func Take(opts ...Option) Snapshot {
	s := Snapshot{seen: make(map[uint64]bool), cfg: newConfig(opts)}
	for _, g := range All() {
		s.seen[g.ID] = true
	}
	return s
}

// Extra returns the goroutines running now that s did not see, except the
// ones the options skip.
func (s Snapshot) Extra() []Goroutine {
	var out []Goroutine
	for _, g := range All() {
		if !s.seen[g.ID] && s.cfg.counts(g) {
			out = append(out, g)
		}
	}
	return out
}

// Wait polls Extra until it is empty or deadline passes and returns the
// goroutines still running then (nil when none).
func (s Snapshot) Wait(deadline time.Time) []Goroutine {
	return poll(deadline, s.Extra)
}

// Running returns the goroutines running now that the options count, the
// caller's included. Unlike a Snapshot it remembers nothing, so a goroutine
// counts however long it has run: with Only, it answers whether any
// goroutine still runs the code under test, in a package whose tests start
// and stop it many times.
func Running(opts ...Option) []Goroutine {
	c := newConfig(opts)
	var out []Goroutine
	for _, g := range All() {
		if c.counts(g) {
			out = append(out, g)
		}
	}
	return out
}

// None polls Running with opts until it is empty or the timeout (see
// Timeout) has passed, and returns the goroutines still running then (nil
// when none).
func None(opts ...Option) []Goroutine {
	c := newConfig(opts)
	return poll(time.Now().Add(c.timeout), func() []Goroutine { return Running(opts...) })
}

// poll calls f until it returns nothing or deadline passes, and returns its
// last result.
func poll(deadline time.Time, f func() []Goroutine) []Goroutine {
	every := firstPoll
	for {
		left := f()
		if len(left) == 0 {
			return nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return left
		}
		t := time.NewTimer(min(every, wait))
		<-t.C
		every = min(2*every, maxPoll)
	}
}

// Check records the goroutines running now and registers a cleanup on t
// that fails t, listing their stacks, if goroutines started since are still
// running when the timeout has passed after the test. Call it first in the
// test, so that its cleanup runs after the others (cleanups run last
// registered, first called).
func Check(t testing.TB, opts ...Option) {
	t.Helper()
	s := Take(opts...)
	t.Cleanup(func() {
		t.Helper()
		if left := s.Wait(time.Now().Add(s.cfg.timeout)); len(left) > 0 {
			t.Errorf("%s", Report(left, s.cfg.timeout))
		}
	})
}

// Report formats leaked goroutines for a test failure.
func Report(gs []Goroutine, waited time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "leaktest: %d goroutine(s) still running %v after the test:", len(gs), waited)
	for _, g := range gs {
		b.WriteString("\n\n")
		b.WriteString(g.Stack)
	}
	return b.String()
}

// All returns every goroutine of the process, the caller's included.
func All() []Goroutine {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []Goroutine
	for _, entry := range strings.Split(strings.TrimSpace(string(buf)), "\n\n") {
		if g, ok := parse(entry); ok {
			out = append(out, g)
		}
	}
	return out
}

// parse reads one entry of runtime.Stack: "goroutine 7 [select]:\n...".
func parse(entry string) (Goroutine, bool) {
	header, _, _ := strings.Cut(entry, "\n")
	rest, ok := strings.CutPrefix(header, "goroutine ")
	if !ok {
		return Goroutine{}, false
	}
	idText, rest, ok := strings.Cut(rest, " [")
	if !ok {
		return Goroutine{}, false
	}
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		return Goroutine{}, false
	}
	state, _, _ := strings.Cut(rest, "]")
	return Goroutine{ID: id, State: state, Stack: entry}, true
}

// counts reports whether g is subject to the check under c.
func (c *config) counts(g Goroutine) bool {
	for _, s := range defaultIgnore {
		if strings.Contains(g.Stack, s) {
			return false
		}
	}
	for _, s := range c.ignore {
		if strings.Contains(g.Stack, s) {
			return false
		}
	}
	if len(c.createdBy) > 0 && createdBy(g.Stack, c.createdBy) {
		return false
	}
	return len(c.only) == 0 || hasFrame(g.Stack, c.only)
}

// createdBy reports whether stack's "created by" line names a function
// starting with one of prefixes.
func createdBy(stack string, prefixes []string) bool {
	i := strings.LastIndex(stack, "\ncreated by ")
	if i < 0 {
		return false
	}
	fn := stack[i+len("\ncreated by "):]
	for _, p := range prefixes {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// hasFrame reports whether stack has a frame of a function starting with one
// of prefixes whose file (on the next line) is not a _test.go file. The
// "created by" line is not a frame of the goroutine.
func hasFrame(stack string, prefixes []string) bool {
	lines := strings.Split(stack, "\n")
	for i := 1; i+1 < len(lines); i++ {
		fn := lines[i]
		if strings.HasPrefix(fn, "\t") || strings.HasPrefix(fn, "created by ") {
			continue
		}
		file := lines[i+1]
		if !strings.HasPrefix(file, "\t") || strings.Contains(file, "_test.go:") {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
	}
	return false
}
