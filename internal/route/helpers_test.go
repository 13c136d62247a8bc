package route

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/natsnotifier/notifier/match"
)

// self is this node in every table test.
const self = "A"

// fixedRand returns the values of us in turn and counts the calls; it fails
// the test when called more often than it has values.
type fixedRand struct {
	t     testing.TB
	us    []float64
	calls int
}

func (r *fixedRand) Float64() float64 {
	r.t.Helper()
	if r.calls >= len(r.us) {
		r.t.Fatalf("random source called %d times, only %d values scripted", r.calls+1, len(r.us))
		return 0
	}
	u := r.us[r.calls]
	r.calls++
	return u
}

// parseRegs builds registrations from a row's notation, one token each:
//
//	f<node>[<pattern>]           a full registration
//	s<node><weight>[<pattern>]   a slice registration
//
// where node is upper-case letters, weight a decimal number and pattern
// absent (every id), "=V" (exactly V) or "&M=V" (mask M, value V), in
// decimal. Registration ids are 1, 2, ... in token order, whatever the node.
func parseRegs(t testing.TB, s string) []Entry {
	t.Helper()
	var out []Entry
	for i, tok := range strings.Fields(s) {
		e := Entry{Object: "obj", Cmd: "cmd", Key: Ref{ID: uint64(i + 1)}}
		switch tok[0] {
		case 'f':
		case 's':
			e.Slice = true
		default:
			t.Fatalf("registration %q: want f or s first", tok)
		}
		rest := tok[1:]
		j := 0
		for j < len(rest) && rest[j] >= 'A' && rest[j] <= 'Z' {
			j++
		}
		if j == 0 {
			t.Fatalf("registration %q: no node", tok)
		}
		e.Key.Node, rest = rest[:j], rest[j:]
		if e.Slice {
			j = strings.IndexAny(rest, "=&")
			if j < 0 {
				j = len(rest)
			}
			w, err := strconv.ParseFloat(rest[:j], 64)
			if err != nil {
				t.Fatalf("registration %q: weight: %v", tok, err)
			}
			e.Weight, rest = w, rest[j:]
		}
		switch {
		case rest == "":
		case rest[0] == '=':
			v, err := strconv.ParseInt(rest[1:], 10, 64)
			if err != nil {
				t.Fatalf("registration %q: value: %v", tok, err)
			}
			e.Pattern = match.Exact(v)
		case rest[0] == '&':
			m, v, ok := strings.Cut(rest[1:], "=")
			mask, err1 := strconv.ParseInt(m, 10, 64)
			value, err2 := strconv.ParseInt(v, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				t.Fatalf("registration %q: want &mask=value", tok)
			}
			e.Pattern = match.Pattern{Mask: mask, Value: value}
		default:
			t.Fatalf("registration %q: bad pattern %q", tok, rest)
		}
		out = append(out, e)
	}
	return out
}

// lookup stores regs in a match.Table, as the directory does, and returns
// the matches for id, each list sorted by (node, id) so that a scripted
// random value names one slice whatever order the table returns.
func lookup(regs []Entry, id int64) (full, slices_ []Entry) {
	var tab match.Table[Ref]
	for _, e := range regs {
		tab.Put(e)
	}
	full, slices_ = tab.Lookup("obj", "cmd", id, nil, nil)
	byRef := func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Key.Node, b.Key.Node), cmp.Compare(a.Key.ID, b.Key.ID))
	}
	slices.SortFunc(full, byRef)
	slices.SortFunc(slices_, byRef)
	return full, slices_
}

// render writes hops as sorted "node:flags" words, flags F (full) and S<id>
// (the drawn slice), with "fan" first when fan is set; "" for nothing.
func render(hops []Hop, fan bool) string {
	var words []string
	for _, h := range hops {
		w := h.Node + ":"
		if h.Full {
			w += "F"
		}
		if h.Slice {
			w += "S" + strconv.FormatUint(h.SliceID, 10)
		}
		words = append(words, w)
	}
	slices.Sort(words)
	if fan {
		words = append([]string{"fan"}, words...)
	}
	return strings.Join(words, " ")
}

// checkHops checks what holds for every plan: one hop per node, each with
// something to deliver, SliceID only with Slice, at most one slice, and
// Local exactly on self's hop.
func checkHops(t testing.TB, hops []Hop) {
	t.Helper()
	seen := map[string]bool{}
	drawn := 0
	for _, h := range hops {
		if seen[h.Node] {
			t.Errorf("two hops to node %s: %+v", h.Node, hops)
		}
		seen[h.Node] = true
		if !h.Full && !h.Slice {
			t.Errorf("hop %+v delivers nothing", h)
		}
		if !h.Slice && h.SliceID != 0 {
			t.Errorf("hop %+v: slice id without Slice", h)
		}
		if h.Slice {
			drawn++
		}
		if h.Local != (h.Node == self) {
			t.Errorf("hop %+v: Local should be %v (self %s)", h, h.Node == self, self)
		}
	}
	if drawn > 1 {
		t.Errorf("%d slices drawn in one plan: %+v", drawn, hops)
	}
}
