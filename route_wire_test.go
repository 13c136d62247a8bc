package notifier_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/testenv"
)

// The hops internal/route plans are what goes on the wire: a spy on the
// node and fan-out subjects sees one message per node, with the flags of
// its hop. The planner's own table tests cover the rules; these check that
// Publish and RPC send its plan, no more and no less.

// wireSpy records the routed messages of one object seen on NATS, and
// whether a marker message on markSubj has passed (after it, every message
// published before it by the same connection has been seen).
type wireSpy struct {
	mu     sync.Mutex
	object string
	msgs   map[string]byte // "node" or "fan" -> flags; a repeat is recorded in dups
	dups   []string
	marked bool
}

func newWireSpy(t *testing.T, url, object string, subjects ...string) *wireSpy {
	t.Helper()
	s := &wireSpy{object: object, msgs: map[string]byte{}}
	nc := testenv.Connect(t, url)
	for _, subj := range subjects {
		_, err := nc.Subscribe(subj, s.on)
		rpcMust(t, err)
	}
	rpcMust(t, nc.Flush())
	return s
}

func (s *wireSpy) on(m *nats.Msg) {
	// notifier.node.<node>.<kind>.<object>.<cmd>.<id> or notifier.fan.<object>.<cmd>.<id>
	parts := strings.Split(m.Subject, ".")
	var who, object string
	switch {
	case len(parts) == 7 && parts[1] == "node":
		who, object = parts[2], parts[4]
	case len(parts) == 5 && parts[1] == "fan":
		who, object = "fan", parts[2]
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if object == "mark" {
		s.marked = true
		return
	}
	if object != s.object {
		return
	}
	f, _, err := frame.ParseFrame(m.Data)
	if err != nil {
		s.dups = append(s.dups, who+": bad frame "+err.Error())
		return
	}
	if _, ok := s.msgs[who]; ok {
		s.dups = append(s.dups, who)
	}
	s.msgs[who] = f.Flags
}

func (s *wireSpy) isMarked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marked
}

// check compares what the spy saw with want (who -> flags).
func (s *wireSpy) check(t *testing.T, want map[string]byte) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.dups) > 0 {
		t.Errorf("more than one message to %v", s.dups)
	}
	for who, flags := range want {
		got, ok := s.msgs[who]
		switch {
		case !ok:
			t.Errorf("no message to %s, want flags %#x", who, flags)
		case got != flags:
			t.Errorf("message to %s has flags %#x, want %#x", who, got, flags)
		}
	}
	for who, flags := range s.msgs {
		if _, ok := want[who]; !ok {
			t.Errorf("unexpected message to %s (flags %#x)", who, flags)
		}
	}
}

func TestPublishSendsThePlan(t *testing.T) {
	s := testenv.Run(t)
	a, b, c := connect(t, s.URL()), connect(t, s.URL()), connect(t, s.URL())
	spy := newWireSpy(t, s.URL(), "hop", "notifier.node.*.pub.>", "notifier.fan.>")
	fullB, sliceB, fullC, allC := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	for _, err := range []error{
		b.Subscribe("hop", notifier.Exact(1), "c", fullB),
		b.Slice("hop", notifier.Match{}, "c", sliceB, 1), // the only slice: drawn on b
		c.Subscribe("hop", notifier.Exact(1), "c", fullC),
		c.Subscribe("hop", notifier.Match{}, "c", allC), // broadcast: the fan-out subject
	} {
		rpcMust(t, err)
	}
	rpcMust(t, a.Publish("hop", 1, "c", "x"))
	for _, r := range []*recorder{fullB, sliceB, fullC, allC} {
		r.waitLen(t, 1, deliveryTimeout)
	}
	// A marker after the publish, from the same connection, to b's node.
	mark := &recorder{}
	rpcMust(t, b.Subscribe("mark", notifier.Exact(1), "c", mark))
	rpcMust(t, a.Publish("mark", 1, "c", nil))
	eventually(t, deliveryTimeout, spy.isMarked, "the spy sees the marker")
	spy.check(t, map[string]byte{
		"fan":    frame.FlagBroadcast,
		b.Node(): frame.FlagFull | frame.FlagSlice, // full and drawn slice share b's message
		c.Node(): frame.FlagFull,                   // Exact(1); Match{} went on the fan-out subject
	})
}

func TestRPCSendsThePlan(t *testing.T) {
	s := testenv.Run(t)
	a, b, c := rpcConnect(t, s.URL()), rpcConnect(t, s.URL()), rpcConnect(t, s.URL())
	spy := newWireSpy(t, s.URL(), "hop", "notifier.node.*.rpc.>")
	rpcMust(t, b.RPCRegister("hop", notifier.Exact(1), "q", rpcConst("b-full")))
	rpcMust(t, b.RPCSlice("hop", notifier.Match{}, "q", rpcConst("b-slice"), 1)) // the only slice
	rpcMust(t, c.RPCRegister("hop", notifier.Match{}, "q", rpcConst("c-all")))   // RPCs have no fan-out
	res, err := a.RPC(rpcCtx(t, rpcWait), "hop", 1, "q", nil)
	rpcMust(t, err)
	if got := strings.Join(rpcSorted(t, res), " "); got != "b-full b-slice c-all" {
		t.Errorf("results %q, want b-full b-slice c-all", got)
	}
	rpcMust(t, b.RPCRegister("mark", notifier.Exact(1), "q", rpcConst("mark")))
	_, err = a.RPC(context.Background(), "mark", 1, "q", nil)
	rpcMust(t, err)
	eventually(t, deliveryTimeout, spy.isMarked, "the spy sees the marker")
	spy.check(t, map[string]byte{
		b.Node(): frame.FlagTimeout | frame.FlagFull | frame.FlagSlice,
		c.Node(): frame.FlagTimeout | frame.FlagFull,
	})
}
