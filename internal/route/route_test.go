package route

import (
	"testing"

	"github.com/natsnotifier/notifier/match"
)

// Registrations are written as in parseRegs: fA=1 is a full registration on
// node A for id 1, sB3&1=0 a slice of weight 3 on node B for the even ids;
// ids are numbered 1, 2, ... in the row's order. Hops read A:F (node A
// delivers to its full registrations), B:S2 (node B delivers to the drawn
// slice 2), A:FS2 (both), and "fan" (one message on the fan-out subject).
// Slices are sorted by (node, id) before the draw, so u names one of them:
// with weights 1 and 3, u < 0.25 draws the first.
var planTests = []struct {
	name string
	regs string
	id   int64
	u    float64 // what the random source returns
	pub  string  // Publish's plan
	rpc  string  // RPC's plan
}{
	{"nothing registered", "", 1, 0, "", ""},
	{"no pattern matches", "fA=2 sB1=2", 1, 0, "", ""},
	{"unsatisfiable pattern never matches", "fA&1=2 sB1&1=3", 3, 0, "", ""},

	{"full only, one node", "fA=1", 1, 0, "A:F", "A:F"},
	{"full only, remote node", "fB=1", 1, 0, "B:F", "B:F"},
	{"full only, three nodes, one hop each", "fA=1 fA&1=1 fB&1=1 fC&1=0 fC", 1, 0, "fan A:F B:F", "A:F B:F C:F"},
	{"full only, every id: fan-out for publish", "fB", 7, 0, "fan", "B:F"},
	{"full, every id and exact on one node", "fB fB=7", 7, 0, "fan B:F", "B:F"},
	{"full, every id on two nodes: one fan message", "fB fC", 7, 0, "fan", "B:F C:F"},

	{"slice only", "sA1", 1, 0, "A:S1", "A:S1"},
	{"slice only, remote", "sC1=1", 1, 0.99, "C:S1", "C:S1"},
	{"slices 1:3, low u draws weight 1", "sA1 sB3", 1, 0.24, "A:S1", "A:S1"},
	{"slices 1:3, high u draws weight 3", "sA1 sB3", 1, 0.25, "B:S2", "B:S2"},
	{"two slices on one node, one drawn", "sB1 sB1", 1, 0.5, "B:S2", "B:S2"},

	{"both on one node", "fA=1 sA1=1", 1, 0, "A:FS2", "A:FS2"},
	{"both on one remote node", "fB=1 sB1=1", 1, 0, "B:FS2", "B:FS2"},
	{"both on different nodes", "fA=1 sB1", 1, 0, "A:F B:S2", "A:F B:S2"},
	{"slice drawn on the full node, not the other", "fA=1 sA1 sB1", 1, 0.4, "A:FS2", "A:FS2"},
	{"slice drawn away from the full node", "fA=1 sA1 sB1", 1, 0.6, "A:F B:S3", "A:F B:S3"},
	{"fan-out node draws the slice: hop for the slice only", "fA sA1", 5, 0, "fan A:S2", "A:FS2"},
	{"fan-out and node hop and slice", "fA fB=5 sC1", 5, 0, "fan B:F C:S3", "A:F B:F C:S3"},

	{"weight 0 standby, low u", "sA0 sB1", 1, 0, "B:S2", "B:S2"},
	{"weight 0 standby, high u", "sA0 sB1", 1, 0.999, "B:S2", "B:S2"},
	{"weight 0 standby among three", "sA0 sB2 sC0 sD2", 1, 0.49, "B:S2", "B:S2"},
	{"weight 0 standby, the other half", "sA0 sB2 sC0 sD2", 1, 0.5, "D:S4", "D:S4"},
	{"all standby: uniform, first half", "sA0 sB0", 1, 0.49, "A:S1", "A:S1"},
	{"all standby: uniform, second half", "sA0 sB0", 1, 0.5, "B:S2", "B:S2"},
	{"standby only where it matches", "sA0=1 sB1=2", 1, 0.9, "A:S1", "A:S1"},
	{"full registrations do not make a standby slice win", "fB=1 sA0 sC1", 1, 0, "B:F C:S3", "B:F C:S3"},

	{"overlapping slices compete in one draw, first", "sA1&1=1 sB1=3 sC2", 3, 0, "A:S1", "A:S1"},
	{"overlapping slices compete in one draw, second", "sA1&1=1 sB1=3 sC2", 3, 0.3, "B:S2", "B:S2"},
	{"overlapping slices compete in one draw, third", "sA1&1=1 sB1=3 sC2", 3, 0.5, "C:S3", "C:S3"},
	{"overlapping slices, only one matches this id", "sA1&1=1 sB1=3 sC2", 2, 0.1, "C:S3", "C:S3"},
	{"one node, two overlapping full registrations: one hop", "fB&1=1 fB=3 fB&3=3", 3, 0, "B:F", "B:F"},
	{"one destination under two patterns, with a slice", "fA fA&1=1 sA1", 1, 0, "fan A:FS3", "A:FS3"},
	{"negative ids and masks", "fA&-2=-4 sB1&-1=-3 fC=3", -3, 0, "A:F B:S2", "A:F B:S2"},
	{"most negative id", "fB&-9223372036854775808=-9223372036854775808 sC1=-9223372036854775808", -9223372036854775808, 0, "B:F C:S2", "B:F C:S2"},
}

func TestPlan(t *testing.T) {
	for _, tt := range planTests {
		t.Run(tt.name, func(t *testing.T) {
			full, slices := lookup(parseRegs(t, tt.regs), tt.id)
			wantCalls := 0
			if len(slices) > 0 {
				wantCalls = 1
			}

			r := &fixedRand{t: t, us: []float64{tt.u}}
			hops, fan := Publish(nil, full, slices, r, self)
			checkHops(t, hops)
			if got := render(hops, fan); got != tt.pub {
				t.Errorf("Publish(%s, id %d, u %v) = %q, want %q", tt.regs, tt.id, tt.u, got, tt.pub)
			}
			if r.calls != wantCalls {
				t.Errorf("Publish called the random source %d times, want %d", r.calls, wantCalls)
			}

			r = &fixedRand{t: t, us: []float64{tt.u}}
			hops = RPC(nil, full, slices, r, self)
			checkHops(t, hops)
			if got := render(hops, false); got != tt.rpc {
				t.Errorf("RPC(%s, id %d, u %v) = %q, want %q", tt.regs, tt.id, tt.u, got, tt.rpc)
			}
			if r.calls != wantCalls {
				t.Errorf("RPC called the random source %d times, want %d", r.calls, wantCalls)
			}
		})
	}
}

// TestPlanAppends: the plans append to the buffer they are given and leave
// what it held alone, so a caller can reuse one buffer per send.
func TestPlanAppends(t *testing.T) {
	full, slices := lookup(parseRegs(t, "fB=1 fC=1 sB1"), 1)
	old := Hop{Node: "B", Full: true}
	buf := append(make([]Hop, 0, 8), old)
	hops, fan := Publish(buf, full, slices, &fixedRand{t: t, us: []float64{0}}, self)
	if fan || len(hops) != 3 || hops[0] != old || &hops[0] != &buf[0] {
		t.Fatalf("Publish appended %+v (fan %v) to %+v, want two more hops in the same array", hops, fan, buf)
	}
	// The node of the old hop does not count as visited: each plan is its own.
	if got := render(hops[1:], false); got != "B:FS3 C:F" {
		t.Errorf("appended hops %q, want %q", got, "B:FS3 C:F")
	}
	hops = RPC(hops[:1], full, slices, &fixedRand{t: t, us: []float64{0}}, self)
	if got := render(hops[1:], false); got != "B:FS3 C:F" {
		t.Errorf("RPC appended %q, want %q", got, "B:FS3 C:F")
	}
}

// TestPlanOrder: hops follow the order in which their nodes first appear
// among the full registrations; the slice-only hop comes last.
func TestPlanOrder(t *testing.T) {
	full := []Entry{
		{Key: Ref{"C", 1}, Pattern: match.Exact(1)},
		{Key: Ref{"A", 2}, Pattern: match.Exact(1)},
		{Key: Ref{"C", 3}, Pattern: match.Exact(1)},
		{Key: Ref{"B", 4}},
		{Key: Ref{"B", 5}, Pattern: match.Exact(1)},
	}
	slices := []Entry{{Key: Ref{"D", 6}, Slice: true, Weight: 1}}
	hops, fan := Publish(nil, full, slices, &fixedRand{t: t, us: []float64{0}}, self)
	want := []Hop{
		{Node: "C", Full: true},
		{Node: "A", Full: true, Local: true},
		{Node: "B", Full: true},
		{Node: "D", Slice: true, SliceID: 6},
	}
	if !fan || len(hops) != len(want) {
		t.Fatalf("Publish = %+v, fan %v; want %+v, fan true", hops, fan, want)
	}
	for i := range want {
		if hops[i] != want[i] {
			t.Errorf("hop %d = %+v, want %+v", i, hops[i], want[i])
		}
	}
}

var rerouteTests = []struct {
	name string
	regs string
	id   int64
	u    float64
	want string
}{
	{"no slice left", "", 1, 0, ""},
	{"full registrations are not rerouted to", "fB=1 fC", 1, 0, ""},
	{"the slice left", "fB=1 sC1", 1, 0, "C:S2"},
	{"weighted", "sA1 sB3", 1, 0.25, "B:S2"},
	{"standby", "sA0 sB1", 1, 0, "B:S2"},
	{"local", "sA1", 1, 0, "A:S1"},
}

func TestReroute(t *testing.T) {
	for _, tt := range rerouteTests {
		t.Run(tt.name, func(t *testing.T) {
			_, slices := lookup(parseRegs(t, tt.regs), tt.id)
			r := &fixedRand{t: t, us: []float64{tt.u}}
			h, ok := Reroute(slices, r, self)
			got := ""
			if ok {
				checkHops(t, []Hop{h})
				got = render([]Hop{h}, false)
			} else if h != (Hop{}) {
				t.Errorf("Reroute returned %+v with false", h)
			}
			if got != tt.want {
				t.Errorf("Reroute(%s) = %q, want %q", tt.regs, got, tt.want)
			}
			if want := min(len(slices), 1); r.calls != want {
				t.Errorf("random source called %d times, want %d", r.calls, want)
			}
		})
	}
}

// Redraw rows: the RPC is planned with us[0]; each step then drops what it
// names ("node X": the node answered no responders; "reg X#n": the node
// said registration n left) and draws again with the next value of us.
// want holds the first plan, then the result of each step ("-": nothing
// left to draw).
var redrawTests = []struct {
	name  string
	regs  string
	id    int64
	us    []float64
	steps []string
	want  []string
}{
	{"one slice: nothing to redraw", "sA1", 1, []float64{0}, []string{"node A"}, []string{"A:S1", "-"}},
	{"gone node, then the standby, then none", "sA1 sB1 sC0", 1, []float64{0, 0, 0}, []string{"node A", "node B", "node C"}, []string{"A:S1", "B:S2", "C:S3", "-"}},
	{"a gone node takes all its slices", "sA1 sA2 sB0 sC1", 1, []float64{0, 0, 0}, []string{"node A", "reg C#4"}, []string{"A:S1", "C:S4", "B:S3"}},
	{"a gone registration leaves its node's others", "sA1 sA1&1=1 sB0", 1, []float64{0, 0, 0}, []string{"reg A#1", "node A"}, []string{"A:S1", "A:S2", "B:S3"}},
	{"redraw by weight among the rest", "sA1 sB1 sC3", 1, []float64{0, 0.24, 0}, []string{"node A"}, []string{"A:S1", "B:S2"}},
	{"redraw by weight, the heavy one", "sA1 sB1 sC3", 1, []float64{0, 0.25}, []string{"node A"}, []string{"A:S1", "C:S3"}},
	{"a redraw is slice only, full hops stay", "fB=1 fC sA1 sB1", 1, []float64{0, 0}, []string{"node A"}, []string{"A:S3 B:F C:F", "B:S4"}},
	{"drawn on a full node, gone: the other", "fB=1 sB1 sC1", 1, []float64{0, 0}, []string{"node B"}, []string{"B:FS2", "C:S3"}},
	// B#3 would win the second draw (0.9) if it were still a candidate.
	{"a gone full-only node is no slice candidate after DropNode", "fB=1 sA1 sB5 sC0", 1, []float64{0, 0.9, 0.9}, []string{"node B", "node A"}, []string{"A:S2 B:F", "A:S2", "C:S4"}},
	{"only slices that matched are candidates", "sA1 sB1=2 sC0", 1, []float64{0, 0}, []string{"node A"}, []string{"A:S1", "C:S3"}},
}

func TestRedraw(t *testing.T) {
	for _, tt := range redrawTests {
		t.Run(tt.name, func(t *testing.T) {
			full, slices := lookup(parseRegs(t, tt.regs), tt.id)
			r := &fixedRand{t: t, us: tt.us}
			hops := RPC(nil, full, slices, r, self)
			checkHops(t, hops)
			got := []string{render(hops, false)}
			c := Keep(slices)
			clear(slices) // Keep must have copied: the caller reuses its buffer
			for _, step := range tt.steps {
				switch {
				case len(step) > 5 && step[:5] == "node ":
					c.DropNode(step[5:])
				case len(step) > 4 && step[:4] == "reg ":
					var ref Ref
					ref.Node, ref.ID = splitRef(t, step[4:])
					c.Drop(ref)
				default:
					t.Fatalf("bad step %q", step)
				}
				h, ok := c.Draw(r, self)
				if !ok {
					got = append(got, "-")
					continue
				}
				if !h.Slice || h.Full {
					t.Errorf("step %q: redraw %+v, want a slice-only hop", step, h)
				}
				checkHops(t, []Hop{h})
				got = append(got, render([]Hop{h}, false))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("got %q, want %q", got, tt.want)
					break
				}
			}
		})
	}
}

// splitRef parses "X#n".
func splitRef(t *testing.T, s string) (string, uint64) {
	t.Helper()
	for i := range len(s) {
		if s[i] == '#' {
			var id uint64
			for _, c := range s[i+1:] {
				if c < '0' || c > '9' {
					t.Fatalf("bad ref %q", s)
				}
				id = id*10 + uint64(c-'0')
			}
			return s[:i], id
		}
	}
	t.Fatalf("bad ref %q", s)
	return "", 0
}

func TestCandidatesZero(t *testing.T) {
	var c Candidates
	c.DropNode("A")
	c.Drop(Ref{"A", 1})
	if h, ok := c.Draw(&fixedRand{t: t}, self); ok || c.Len() != 0 {
		t.Errorf("zero Candidates drew %+v (len %d)", h, c.Len())
	}
}

func TestBroadcast(t *testing.T) {
	for _, tt := range []struct {
		p    match.Pattern
		want bool
	}{
		{match.Pattern{}, true},
		{match.Exact(0), false},
		{match.Pattern{Mask: 1}, false},
		{match.Pattern{Value: 1}, false}, // unsatisfiable, never matches anyway
	} {
		if got := Broadcast(tt.p); got != tt.want {
			t.Errorf("Broadcast(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

// TestPlanNoAllocs: with room in the buffer, planning allocates nothing, so
// wiring the planner into the hot path costs no allocation.
func TestPlanNoAllocs(t *testing.T) {
	full, slices := lookup(parseRegs(t, "fA fA=1 fB&1=1 fC=1 sB1 sC3 sD0"), 1)
	buf := make([]Hop, 0, 8)
	r := &fixedRand{t: t, us: make([]float64, 1000)}
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = Publish(buf[:0], full, slices, r, self)
		buf = RPC(buf[:0], full, slices, r, self)
		_, _ = Reroute(slices, r, self)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Publish+RPC+Reroute, want 0", allocs)
	}
}

func BenchmarkPublish(b *testing.B) {
	full, slices := lookup(parseRegs(b, "fA fA=1 fB&1=1 fC=1 sB1 sC3 sD0"), 1)
	buf := make([]Hop, 0, 8)
	r := constRand(0.5)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = Publish(buf[:0], full, slices, r, self)
	}
}

type constRand float64

func (c constRand) Float64() float64 { return float64(c) }
