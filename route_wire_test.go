package notifier_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/testenv"
)

// The hops internal/route plans are what goes on the wire: a spy on the
// node and fan-out subjects sees one message per node, with the flags of
// its hop. The planner's own table tests cover the rules; these check that
// Publish and RPC send its plan, no more and no less.

// wireSpy records the routed messages of one object and kind seen on NATS
// (the node subjects, and for publishes the fan-out subject), and whether a
// message of object "mark" has passed: after it, every message published
// before it by the same connection has been seen.
type wireSpy struct {
	subj   bus.Subjects
	kind   bus.Kind
	nodes  []string // the nodes whose subjects it parses
	mu     sync.Mutex
	object string
	msgs   map[string]byte // node, or "fan" -> flags; a repeat is recorded in bad
	bad    []string        // what should not have been seen
	marked bool
}

func newWireSpy(t *testing.T, url, object string, kind bus.Kind, nodes ...string) *wireSpy {
	t.Helper()
	s := &wireSpy{subj: bus.Subjects{Prefix: bus.DefaultPrefix}, kind: kind, nodes: nodes, object: object, msgs: map[string]byte{}}
	nc := testenv.Connect(t, url)
	subjects := []string{s.subj.NodeData("*", kind) + ">"}
	if kind == bus.KindPub {
		subjects = append(subjects, s.subj.Fan()+">")
	}
	for _, subj := range subjects {
		_, err := nc.Subscribe(subj, s.on)
		must(t, err)
	}
	must(t, nc.Flush())
	return s
}

func (s *wireSpy) on(m *nats.Msg) {
	who, addr, ok := "fan", "", false
	if addr, ok = strings.CutPrefix(m.Subject, s.subj.Fan()); !ok {
		for _, node := range s.nodes {
			if addr, ok = strings.CutPrefix(m.Subject, s.subj.NodeData(node, s.kind)); ok {
				who = node
				break
			}
		}
	}
	object := ""
	if ok {
		object, _, _, ok = bus.ParseAddr(addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.bad = append(s.bad, "unparsed subject "+m.Subject)
		return
	}
	if object == "mark" {
		s.marked = true
		return
	}
	if object != s.object {
		return
	}
	f, _, err := frame.ParseFrame(m.Data)
	if err != nil {
		s.bad = append(s.bad, who+": bad frame "+err.Error())
		return
	}
	if _, ok := s.msgs[who]; ok {
		s.bad = append(s.bad, "a second message to "+who)
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
	for _, b := range s.bad {
		t.Error(b)
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
	spy := newWireSpy(t, s.URL(), "hop", bus.KindPub, a.Node(), b.Node(), c.Node())
	fullB, sliceB, fullC, allC := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	for _, err := range []error{
		b.Subscribe("hop", notifier.Exact(1), "c", fullB),
		b.Slice("hop", notifier.Match{}, "c", sliceB, 1), // the only slice: drawn on b
		c.Subscribe("hop", notifier.Exact(1), "c", fullC),
		c.Subscribe("hop", notifier.Match{}, "c", allC), // broadcast: the fan-out subject
	} {
		must(t, err)
	}
	must(t, a.Publish("hop", 1, "c", "x"))
	for _, r := range []*recorder{fullB, sliceB, fullC, allC} {
		r.waitLen(t, 1, deliveryTimeout)
	}
	// A marker after the publish, from the same connection, to b's node.
	mark := &recorder{}
	must(t, b.Subscribe("mark", notifier.Exact(1), "c", mark))
	must(t, a.Publish("mark", 1, "c", nil))
	eventually(t, deliveryTimeout, spy.isMarked, "the spy sees the marker")
	spy.check(t, map[string]byte{
		"fan":    frame.FlagBroadcast,
		b.Node(): frame.FlagFull | frame.FlagSlice, // full and drawn slice share b's message
		c.Node(): frame.FlagFull,                   // Exact(1); Match{} went on the fan-out subject
	})
}

func TestRPCSendsThePlan(t *testing.T) {
	s := testenv.Run(t)
	a, b, c := connect(t, s.URL()), connect(t, s.URL()), connect(t, s.URL())
	spy := newWireSpy(t, s.URL(), "hop", bus.KindRPC, a.Node(), b.Node(), c.Node())
	must(t, b.RPCRegister("hop", notifier.Exact(1), "q", rpcConst("b-full")))
	must(t, b.RPCSlice("hop", notifier.Match{}, "q", rpcConst("b-slice"), 1)) // the only slice
	must(t, c.RPCRegister("hop", notifier.Match{}, "q", rpcConst("c-all")))   // RPCs have no fan-out
	res, err := a.RPC(rpcCtx(t, rpcWait), "hop", 1, "q", nil)
	must(t, err)
	if got := strings.Join(rpcSorted(t, res), " "); got != "b-full b-slice c-all" {
		t.Errorf("results %q, want b-full b-slice c-all", got)
	}
	must(t, b.RPCRegister("mark", notifier.Exact(1), "q", rpcConst("mark")))
	_, err = a.RPC(context.Background(), "mark", 1, "q", nil)
	must(t, err)
	eventually(t, deliveryTimeout, spy.isMarked, "the spy sees the marker")
	spy.check(t, map[string]byte{
		b.Node(): frame.FlagTimeout | frame.FlagFull | frame.FlagSlice,
		c.Node(): frame.FlagTimeout | frame.FlagFull,
	})
}
