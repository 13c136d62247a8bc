package route

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/natsnotifier/notifier/match"
)

// The fuzz test builds a small directory from the input bytes, matches it
// by brute force, and checks every plan against a model written from the
// rules in the package documentation: which nodes get a full hop, whether
// the fan-out subject is used, which slice is drawn (a plain cumulative scan
// over the weights), and that a redraw after a gone node follows the same
// rule over what is left.

var (
	fuzzNodes    = []string{"A", "B", "C", "D"} // self is A
	fuzzWeights  = []float64{0, 1, 2, 3, 0.5, 0}
	fuzzPatterns = []match.Pattern{
		{},                         // every id
		match.Exact(0),             // id 0
		match.Exact(1),             // id 1
		{Mask: 1, Value: 0},        // even
		{Mask: 1, Value: 1},        // odd
		{Mask: 3, Value: 3},        // 3 mod 4
		{Mask: -2, Value: -2},      // -2 and -1
		{Mask: 1, Value: 2},        // unsatisfiable
		match.Exact(-1),            // id -1
		{Mask: -1 << 62, Value: 0}, // small magnitudes
	}
	fuzzIDs = []int64{0, 1, 2, 3, -1, -2, 7, 1 << 40}
)

// fuzzDir decodes data: byte 0 picks the id, bytes 1-8 the random value,
// then each registration takes two bytes (node, kind and weight; pattern).
func fuzzDir(data []byte) (regs []Entry, id int64, u float64, ok bool) {
	if len(data) < 9 {
		return nil, 0, 0, false
	}
	id = fuzzIDs[int(data[0])%len(fuzzIDs)]
	u = float64(binary.LittleEndian.Uint64(data[1:9])>>11) / (1 << 53) // [0, 1)
	data = data[9:]
	for i := 0; i+1 < len(data) && len(regs) < 16; i += 2 {
		a, b := data[i], data[i+1]
		e := Entry{
			Object: "obj", Cmd: "cmd",
			Key:     Ref{Node: fuzzNodes[int(a&3)], ID: uint64(len(regs) + 1)},
			Slice:   a&4 != 0,
			Pattern: fuzzPatterns[int(b)%len(fuzzPatterns)],
		}
		if e.Slice {
			e.Weight = fuzzWeights[int(a>>3)%len(fuzzWeights)]
		}
		regs = append(regs, e)
	}
	return regs, id, u, true
}

// modelMatch is the brute-force lookup: every registration whose pattern
// matches id, in the given order.
func modelMatch(regs []Entry, id int64) (full, cands []Entry) {
	for _, e := range regs {
		if !e.Pattern.Matches(id) {
			continue
		}
		if e.Slice {
			cands = append(cands, e)
		} else {
			full = append(full, e)
		}
	}
	return full, cands
}

// modelDraw is the weighted choice by a plain scan: the first candidate
// whose cumulative positive weight exceeds u·total; with no positive weight,
// candidate ⌊u·n⌋; the last positive one when rounding leaves u·total at
// the total.
func modelDraw(cands []Entry, u float64) (Ref, bool) {
	if len(cands) == 0 {
		return Ref{}, false
	}
	total := 0.0
	for _, e := range cands {
		if e.Weight > 0 {
			total += e.Weight
		}
	}
	if total == 0 {
		return cands[min(int(u*float64(len(cands))), len(cands)-1)].Key, true
	}
	cum, last := 0.0, -1
	for i, e := range cands {
		if e.Weight > 0 {
			cum += e.Weight
			if u*total < cum {
				return e.Key, true
			}
			last = i
		}
	}
	return cands[last].Key, true
}

// modelHops is the expected plan: the nodes with a full hop, in order of
// first appearance, the drawn slice, and the fan flag.
func modelHops(full, cands []Entry, u float64, fanOut bool) (nodes []string, drawn Ref, hasSlice, fan bool) {
	for _, e := range full {
		if fanOut && e.Pattern == (match.Pattern{}) {
			fan = true
			continue
		}
		if !slices.Contains(nodes, e.Key.Node) {
			nodes = append(nodes, e.Key.Node)
		}
	}
	drawn, hasSlice = modelDraw(cands, u)
	return nodes, drawn, hasSlice, fan
}

// checkPlan compares a plan with the model.
func checkPlan(t *testing.T, what string, hops []Hop, fan bool, full, cands []Entry, u float64, fanOut bool) {
	t.Helper()
	checkHops(t, hops)
	nodes, drawn, hasSlice, wantFan := modelHops(full, cands, u, fanOut)
	if fan != wantFan {
		t.Errorf("%s: fan %v, want %v", what, fan, wantFan)
	}
	var gotNodes []string
	sliceAt := -1
	for i, h := range hops {
		if h.Full {
			gotNodes = append(gotNodes, h.Node)
		}
		if h.Slice {
			sliceAt = i
		}
	}
	if !slices.Equal(gotNodes, nodes) {
		t.Errorf("%s: full hops to %q, want %q (in this order)", what, gotNodes, nodes)
	}
	switch {
	case !hasSlice && sliceAt >= 0:
		t.Errorf("%s: a slice hop %+v without any matching slice", what, hops[sliceAt])
	case hasSlice && sliceAt < 0:
		t.Errorf("%s: no slice hop, want %+v drawn", what, drawn)
	case hasSlice:
		h := hops[sliceAt]
		if h.Node != drawn.Node || h.SliceID != drawn.ID {
			t.Errorf("%s: slice %s#%d drawn, want %s#%d", what, h.Node, h.SliceID, drawn.Node, drawn.ID)
		}
		// Alone on its hop exactly when its node gets no full hop.
		if h.Full != slices.Contains(nodes, h.Node) {
			t.Errorf("%s: slice hop %+v, full hop expected %v", what, h, slices.Contains(nodes, h.Node))
		}
		if !h.Full && sliceAt != len(hops)-1 {
			t.Errorf("%s: slice-only hop at %d of %d, want last", what, sliceAt, len(hops))
		}
	}
	if len(hops) != len(nodes)+boolInt(hasSlice && !slices.Contains(nodes, drawn.Node)) {
		t.Errorf("%s: %d hops, want one per node: %+v", what, len(hops), hops)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func FuzzPlan(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x00, 0x00, 0x0c, 0x04, 0x05, 0x01})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x05, 0x00, 0x06, 0x00, 0x07, 0x03})
	f.Add([]byte{4, 1, 2, 3, 4, 5, 6, 7, 8, 0x0c, 0x06, 0x14, 0x08, 0x1d, 0x00, 0x01, 0x00, 0x02, 0x09})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x04, 0x00, 0x05, 0x00, 0x06, 0x00, 0x07, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		regs, id, u, ok := fuzzDir(data)
		if !ok {
			return
		}
		full, cands := modelMatch(regs, id)
		// The planner must not depend on the order of full registrations,
		// and the table may return them in any order: check a reversed copy
		// too (the draw depends on the order of cands, which is kept).
		rev := reversed(full)
		for _, full := range [][]Entry{full, rev} {
			calls := boolInt(len(cands) > 0)

			r := &fixedRand{t: t, us: []float64{u}}
			hops, fan := Publish(nil, full, cands, r, self)
			checkPlan(t, "Publish", hops, fan, full, cands, u, true)
			if r.calls != calls {
				t.Errorf("Publish: %d random draws, want %d", r.calls, calls)
			}

			r = &fixedRand{t: t, us: []float64{u}}
			hops = RPC(nil, full, cands, r, self)
			checkPlan(t, "RPC", hops, false, full, cands, u, false)
			if r.calls != calls {
				t.Errorf("RPC: %d random draws, want %d", r.calls, calls)
			}
		}

		r := &fixedRand{t: t, us: []float64{u}}
		h, ok := Reroute(cands, r, self)
		want, wantOK := modelDraw(cands, u)
		if ok != wantOK || (ok && (h.Node != want.Node || h.SliceID != want.ID || !h.Slice || h.Full || h.Local != (h.Node == self))) {
			t.Errorf("Reroute = %+v, %v; want %+v, %v", h, ok, want, wantOK)
		}

		// Redraws: drop the drawn slice's node, then draw again with 1-u,
		// until nothing is left; each result must be the model's draw over
		// the cands of the nodes not yet gone.
		c := Keep(cands)
		left := cands
		gone := want.Node
		for step := 0; wantOK && step <= len(fuzzNodes); step++ {
			c.DropNode(gone)
			left = withoutNode(left, gone)
			v := 1 - u
			if v >= 1 {
				v = 0
			}
			h, ok := c.Draw(&fixedRand{t: t, us: []float64{v}}, self)
			var wantRef Ref
			wantRef, wantOK = modelDraw(left, v)
			if ok != wantOK || (ok && (h.Node != wantRef.Node || h.SliceID != wantRef.ID || !h.Slice || h.Full)) {
				t.Fatalf("redraw %d after %s gone = %+v, %v; want %+v, %v", step, gone, h, ok, wantRef, wantOK)
			}
			if c.Len() != len(left) {
				t.Fatalf("redraw %d: %d candidates left, want %d", step, c.Len(), len(left))
			}
			gone = wantRef.Node
		}
		if wantOK {
			t.Fatalf("redraws did not end after every node was gone")
		}
	})
}

func reversed(s []Entry) []Entry {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func withoutNode(s []Entry, node string) []Entry {
	return slices.DeleteFunc(slices.Clone(s), func(e Entry) bool { return e.Key.Node == node })
}
