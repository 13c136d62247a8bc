package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"

	"github.com/natsnotifier/notifier"
)

const subDoc = `Registers on the bus and prints every notification it receives, one line each:
  <object> <id> <cmd> <args as JSON>
The id pattern is --id N (exactly N), or --mask M --value V (every id with
id & M == V), or neither (every id). Masks and values may be written in hex
(0x...). With --slice the registration is a slice of weight --weight: it
receives its share of the matching publishes, competing with the other slices
on the bus; otherwise it is a full registration and receives every matching
publish.

Stops after --count notifications, or on Ctrl-C. A line on stderr says when the
registration is in place.

Examples:
  notifier sub --object demo --cmd log
  notifier sub --object demo --cmd log --mask 1 --value 0          # even ids
  notifier sub --object demo --cmd work --slice --weight 3 --count 10
`

func runSub(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := newFlags("sub", "--object O --cmd C [--id N | --mask M --value V] [flags]", subDoc)
	conn := addConnFlags(f)
	names := addNameFlags(f, "watch")
	var id, mask, value int64Flag
	f.Var(&id, "id", "watch exactly this `id`")
	f.Var(&mask, "mask", "id pattern: watch ids with id & `mask` == value")
	f.Var(&value, "value", "id pattern: see --mask")
	slice := f.Bool("slice", false, "register as a weighted slice instead of a full registration")
	weight := f.Float64("weight", 1, "slice `weight` (with --slice); 0 is standby")
	count := f.Int("count", 0, "exit after `N` notifications (0: run until interrupted)")
	if code, ok := f.parse(args, stdout, stderr); !ok {
		return code
	}
	if err := names.check(); err != nil {
		return f.fail(stderr, "%v", err)
	}
	var pattern notifier.Match // every id
	switch {
	case id.set && (mask.set || value.set):
		return f.fail(stderr, "give --id or --mask/--value, not both")
	case id.set:
		pattern = notifier.Exact(id.v)
	case mask.set || value.set:
		pattern = notifier.Match{Mask: mask.v, Value: value.v}
	}
	if f.isSet("weight") && !*slice {
		return f.fail(stderr, "--weight needs --slice")
	}
	if *slice && (math.IsNaN(*weight) || math.IsInf(*weight, 0) || *weight < 0) {
		return f.fail(stderr, "--weight %v: want a finite number, 0 or more (0 is standby)", *weight)
	}
	if *count < 0 {
		return f.fail(stderr, "--count %d: want 0 or more", *count)
	}
	if err := conn.check(); err != nil {
		return f.fail(stderr, "%v", err)
	}

	n, err := conn.connect("sub", stderr, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return exitFail
	}
	p := &printer{w: stdout, limit: *count, done: make(chan struct{})}
	kind := "full registration"
	if *slice {
		kind = fmt.Sprintf("slice, weight %g", *weight)
		err = n.Slice(*names.object, pattern, *names.cmd, p, *weight)
	} else {
		err = n.Subscribe(*names.object, pattern, *names.cmd, p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "notifier sub: %v\n", err)
		closeNotifier("sub", n, stderr)
		return exitFail
	}
	fmt.Fprintf(stderr, "notifier sub: watching object=%s cmd=%s ids=%s (%s); Ctrl-C to stop\n",
		*names.object, *names.cmd, describeMatch(pattern), kind)
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	// Unsubscribe first: no notification is printed after this returns.
	_ = n.UnsubscribeAll(p)
	if closeNotifier("sub", n, stderr) != nil {
		return exitFail
	}
	return exitOK
}

// printer prints notifications, up to limit (0: no limit).
type printer struct {
	w     io.Writer
	limit int

	mu   sync.Mutex // guards w and got
	got  int
	done chan struct{} // closed when limit is reached
}

var _ notifier.Subscriber = (*printer)(nil)

func (p *printer) Notify(object string, id int64, cmd string, args notifier.Args) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit > 0 && p.got >= p.limit {
		return
	}
	p.got++
	fmt.Fprintf(p.w, "%s %d %s %s\n", object, id, cmd, args.String())
	if p.got == p.limit {
		close(p.done)
	}
}

// describeMatch renders an id pattern for people.
func describeMatch(m notifier.Match) string {
	switch {
	case m == notifier.Match{}:
		return "all"
	case m.Mask == -1:
		return fmt.Sprintf("%d", m.Value)
	default:
		return fmt.Sprintf("id&%#x==%#x", uint64(m.Mask), uint64(m.Value))
	}
}
