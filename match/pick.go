package match

import "math"

// Rand is the random source of Pick. Float64 returns a number in [0, 1);
// *math/rand/v2.Rand satisfies it. Pick calls it exactly once per draw on a
// non-empty input and never concurrently on its own.
type Rand interface{ Float64() float64 }

// Pick draws one index of entries with probability proportional to Weight and
// returns it, or -1 when entries is empty.
//
// Weights that are not > 0 (0, and also negative or NaN, which callers should
// reject earlier) count as 0, standby: such an entry is never returned while
// some weight is > 0, whatever r returns and whatever the float rounding. When
// every weight is 0 the draw is uniform among all entries. Weights whose sum
// overflows to +Inf are rescaled, so huge finite weights keep their
// proportions. A Float64 outside [0, 1) is clamped.
func Pick[K comparable](entries []Entry[K], r Rand) int {
	n := len(entries)
	if n == 0 {
		return -1
	}
	u := r.Float64()
	if !(u > 0) { // also NaN
		u = 0
	}
	total, maxW := 0.0, 0.0
	for i := range entries {
		if w := entries[i].Weight; w > 0 {
			total += w
			maxW = max(maxW, w)
		}
	}
	if total == 0 {
		return min(int(min(u, 1)*float64(n)), n-1)
	}
	scale := 1.0
	if math.IsInf(total, 1) {
		// Weights are finite but their sum is not: divide by the largest
		// (an infinite weight maps to 1 and wins against finite ones only
		// in proportion, which is as good as any answer to bad input).
		if math.IsInf(maxW, 1) {
			maxW = math.MaxFloat64
		}
		scale, total = 1/maxW, 0
		for i := range entries {
			if w := entries[i].Weight; w > 0 {
				total += min(w, math.MaxFloat64) * scale
			}
		}
	}
	target := u * total
	cum, last := 0.0, -1
	for i := range entries {
		w := entries[i].Weight
		if !(w > 0) {
			continue
		}
		cum += min(w, math.MaxFloat64) * scale
		if target < cum {
			return i
		}
		last = i
	}
	// Rounding made the running sum fall short of target (u close to 1):
	// the draw belongs to the last positive weight.
	return last
}
