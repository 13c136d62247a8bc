package route

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sigmas is the tolerance of the statistical tests in standard deviations
// of the binomial count. With a fixed seed the result is deterministic; the
// bound says what a fair draw may do, so a change of seed keeps the test
// meaningful (a fair draw leaves 5σ with probability about 6e-7), while a
// bias of one percentage point at these sample sizes is about 9σ.
const sigmas = 5

// binomialTolerance is sigmas standard deviations of a count of successes
// in n trials of probability p.
func binomialTolerance(n int, p float64) float64 {
	return sigmas * math.Sqrt(float64(n)*p*(1-p))
}

// checkShares draws n plans and checks that each slice is drawn as often as
// its share says, within the binomial tolerance; a share of 0 must never be
// drawn.
func checkShares(t *testing.T, regs string, shares map[Ref]float64, n int, draw func(*rand.Rand) (Hop, bool)) {
	t.Helper()
	r := rand.New(rand.NewPCG(11, 12))
	counts := map[Ref]int{}
	for range n {
		h, ok := draw(r)
		if !ok || !h.Slice {
			t.Fatalf("%s: no slice drawn (%+v, %v)", regs, h, ok)
		}
		counts[Ref{h.Node, h.SliceID}]++
	}
	for ref, c := range counts {
		if _, ok := shares[ref]; !ok {
			t.Errorf("%s: %s#%d drawn %d times, not a candidate", regs, ref.Node, ref.ID, c)
		}
	}
	for ref, p := range shares {
		got := counts[ref]
		if p == 0 {
			if got != 0 {
				t.Errorf("%s: standby %s#%d drawn %d times of %d", regs, ref.Node, ref.ID, got, n)
			}
			continue
		}
		want := float64(n) * p
		if tol := binomialTolerance(n, p); math.Abs(float64(got)-want) > tol {
			t.Errorf("%s: %s#%d drawn %d times of %d, want %.0f ± %.0f (%dσ)", regs, ref.Node, ref.ID, got, n, want, tol, sigmas)
		} else {
			t.Logf("%s: %s#%d drawn %d times of %d, want %.0f ± %.0f", regs, ref.Node, ref.ID, got, n, want, tol)
		}
	}
}

// findSlice returns the slice hop of a plan.
func findSlice(hops []Hop) (Hop, bool) {
	for _, h := range hops {
		if h.Slice {
			return h, true
		}
	}
	return Hop{}, false
}

func TestDrawShares(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 50_000
	}
	for _, tt := range []struct {
		regs   string
		id     int64
		shares map[Ref]float64
	}{
		// Weights 1, 3, 0, 6 on four nodes, a full registration beside.
		{"fB=1 sA1 sB3 sC0 sD6", 1, map[Ref]float64{{"A", 2}: 0.1, {"B", 3}: 0.3, {"C", 4}: 0, {"D", 5}: 0.6}},
		// Overlapping patterns compete in one draw; the odd-only slice
		// does not match id 2.
		{"sA1&1=1 sB1=2 sC2&1=0 sD0.5", 2, map[Ref]float64{{"B", 2}: 1 / 3.5, {"C", 3}: 2 / 3.5, {"D", 4}: 0.5 / 3.5}},
		// Every slice on standby: uniform.
		{"sA0 sB0 sC0", 5, map[Ref]float64{{"A", 1}: 1.0 / 3, {"B", 2}: 1.0 / 3, {"C", 3}: 1.0 / 3}},
	} {
		full, slices := lookup(parseRegs(t, tt.regs), tt.id)
		var buf []Hop
		checkShares(t, "Publish "+tt.regs, tt.shares, n, func(r *rand.Rand) (Hop, bool) {
			buf, _ = Publish(buf[:0], full, slices, r, self)
			return findSlice(buf)
		})
		checkShares(t, "RPC "+tt.regs, tt.shares, n, func(r *rand.Rand) (Hop, bool) {
			buf = RPC(buf[:0], full, slices, r, self)
			return findSlice(buf)
		})
		checkShares(t, "Reroute "+tt.regs, tt.shares, n, func(r *rand.Rand) (Hop, bool) {
			return Reroute(slices, r, self)
		})
	}
}

// TestRedrawShares: after a node is gone, the redraw shares the traffic
// among the rest by their weights, as if the gone node had never been there.
func TestRedrawShares(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 30_000
	}
	regs := "sA5 sB1 sC3 sC0 sD0"
	_, slices := lookup(parseRegs(t, regs), 1)
	shares := map[Ref]float64{{"B", 2}: 0.25, {"C", 3}: 0.75, {"C", 4}: 0, {"D", 5}: 0}
	checkShares(t, "redraw without A "+regs, shares, n, func(r *rand.Rand) (Hop, bool) {
		c := Keep(slices)
		c.DropNode("A")
		return c.Draw(r, self)
	})
	// Without A and C, B is the only weighted slice left: it takes every
	// draw, the standby D none.
	checkShares(t, "redraw without A, C "+regs, map[Ref]float64{{"B", 2}: 1, {"D", 5}: 0}, n/10, func(r *rand.Rand) (Hop, bool) {
		c := Keep(slices)
		c.DropNode("A")
		c.DropNode("C")
		return c.Draw(r, self)
	})
	checkShares(t, "redraw without A, B, C#3 "+regs, map[Ref]float64{{"C", 4}: 0.5, {"D", 5}: 0.5}, n, func(r *rand.Rand) (Hop, bool) {
		c := Keep(slices)
		c.DropNode("A")
		c.DropNode("B")
		c.Drop(Ref{"C", 3})
		return c.Draw(r, self)
	})
}
