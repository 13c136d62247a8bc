package match

import (
	"math"
	"math/rand/v2"
	"testing"
)

// fixedRand returns the same value on every call.
type fixedRand float64

func (f fixedRand) Float64() float64 { return float64(f) }

func weights(ws ...float64) []Entry[int] {
	es := make([]Entry[int], len(ws))
	for i, w := range ws {
		es[i] = Entry[int]{Slice: true, Weight: w, Key: i}
	}
	return es
}

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// almostOne is the largest float64 below 1, the largest value Float64 returns.
var almostOne = math.Nextafter(1, 0)

func TestPickEmpty(t *testing.T) {
	if got := Pick[int](nil, seeded()); got != -1 {
		t.Fatalf("Pick(nil) = %d, want -1", got)
	}
	if got := Pick(weights(), fixedRand(0.5)); got != -1 {
		t.Fatalf("Pick(empty) = %d, want -1", got)
	}
}

// TestPickEdges uses a stub Rand at the ends of [0, 1) and beyond.
func TestPickEdges(t *testing.T) {
	tests := []struct {
		name string
		ws   []float64
		u    float64
		want int
	}{
		{"single at 0", []float64{1}, 0, 0},
		{"single near 1", []float64{1}, almostOne, 0},
		{"single zero", []float64{0}, almostOne, 0},
		{"leading zero at 0", []float64{0, 1}, 0, 1},
		{"leading zeros at 0", []float64{0, 0, 0, 2, 0}, 0, 3},
		{"trailing zero near 1", []float64{1, 0}, almostOne, 0},
		{"trailing zeros near 1", []float64{0, 3, 0, 0}, almostOne, 1},
		{"decimal weights near 1", []float64{0.1, 0.2, 0.3, 0}, almostOne, 2},
		{"negligible weight near 1", []float64{1e300, 1e-300, 0}, almostOne, 0},
		{"huge then zero near 1", []float64{1e-300, 1e300, 0}, almostOne, 1},
		{"halfway", []float64{1, 1}, 0.5, 1},
		{"just below halfway", []float64{1, 1}, math.Nextafter(0.5, 0), 0},
		{"uniform at 0", []float64{0, 0, 0}, 0, 0},
		{"uniform near 1", []float64{0, 0, 0}, almostOne, 2},
		{"uniform middle", []float64{0, 0, 0, 0}, 0.5, 2},
		{"stub returns 1", []float64{1, 0}, 1, 0},
		{"stub returns 1 uniform", []float64{0, 0}, 1, 1},
		{"stub returns 2", []float64{0, 1, 0}, 2, 1},
		{"stub returns negative", []float64{0, 1, 0}, -1, 1},
		{"stub returns NaN", []float64{0, 1, 0}, math.NaN(), 1},
		{"stub returns NaN uniform", []float64{0, 0}, math.NaN(), 0},
		{"negative weight is standby", []float64{-1, 1}, 0, 1},
		{"NaN weight is standby", []float64{math.NaN(), 1}, 0, 1},
		{"overflowing sum near 1", []float64{math.MaxFloat64, math.MaxFloat64, 0}, almostOne, 1},
		{"overflowing sum at 0", []float64{0, math.MaxFloat64, math.MaxFloat64}, 0, 1},
		{"overflowing sum middle", []float64{math.MaxFloat64, math.MaxFloat64}, 0.75, 1},
		{"infinite weight", []float64{0, math.Inf(1), 0}, almostOne, 1},
	}
	for _, tt := range tests {
		if got := Pick(weights(tt.ws...), fixedRand(tt.u)); got != tt.want {
			t.Errorf("%s: Pick(%v, %v) = %d, want %d", tt.name, tt.ws, tt.u, got, tt.want)
		}
	}
}

// TestPickNeverStandby sweeps u over [0, 1) including its edges and checks
// that a zero weight is never chosen while some weight is positive.
func TestPickNeverStandby(t *testing.T) {
	sets := [][]float64{
		{0, 1}, {1, 0}, {0, 0.1, 0.2, 0.3, 0}, {1e-300, 0, 1e300, 0}, {0.7, 0, 0.1, 0, 0.2, 0},
		{1, 1, 1, 0, 0, 0}, {math.MaxFloat64, 0, math.MaxFloat64, 0}, {3, 0, 0, 0, 0, 0, 0, 0},
	}
	us := []float64{0, math.SmallestNonzeroFloat64, 1e-17, almostOne, math.Nextafter(almostOne, 0)}
	for i := range 1000 {
		us = append(us, float64(i)/1000)
	}
	for _, ws := range sets {
		es := weights(ws...)
		for _, u := range us {
			got := Pick(es, fixedRand(u))
			if got < 0 || got >= len(es) || !(ws[got] > 0) {
				t.Fatalf("Pick(%v, %v) = %d: out of range or standby", ws, u, got)
			}
		}
	}
}

// sigmaTol returns 6 binomial standard deviations for n draws at probability p.
func sigmaTol(n int, p float64) float64 { return 6 * math.Sqrt(float64(n)*p*(1-p)) }

func TestPickProportional(t *testing.T) {
	tests := []struct {
		name string
		ws   []float64
	}{
		{"standby never chosen", []float64{0, 1, 0, 2, 0}},
		{"equal", []float64{1, 1, 1, 1}},
		{"unequal", []float64{1, 2, 3, 4}},
		{"skewed", []float64{0.01, 100}},
		{"fractional", []float64{0.5, 0.25, 0.25}},
		{"all standby is uniform", []float64{0, 0, 0, 0, 0}},
		{"single standby", []float64{0}},
	}
	const draws = 100_000
	for _, tt := range tests {
		r := seeded()
		es := weights(tt.ws...)
		counts := make([]int, len(es))
		for range draws {
			i := Pick(es, r)
			if i < 0 || i >= len(es) {
				t.Fatalf("%s: Pick = %d out of range", tt.name, i)
			}
			counts[i]++
		}
		total := 0.0
		for _, w := range tt.ws {
			total += w
		}
		for i, w := range tt.ws {
			p := 1 / float64(len(tt.ws))
			if total > 0 {
				p = w / total
			}
			if p == 0 {
				if counts[i] != 0 {
					t.Errorf("%s: standby %d chosen %d times", tt.name, i, counts[i])
				}
				continue
			}
			want := p * draws
			if diff := math.Abs(float64(counts[i]) - want); diff > sigmaTol(draws, p) {
				t.Errorf("%s: index %d chosen %d times, want %.0f ± %.0f", tt.name, i, counts[i], want, sigmaTol(draws, p))
			}
		}
	}
}

// TestPickCallsRandOnce checks that Pick consumes one number per draw, so a
// caller can reason about its random stream.
func TestPickCallsRandOnce(t *testing.T) {
	c := &countingRand{}
	for _, ws := range [][]float64{{1}, {0, 0}, {1, 2, 3}, {math.MaxFloat64, math.MaxFloat64}} {
		c.n = 0
		Pick(weights(ws...), c)
		if c.n != 1 {
			t.Errorf("Pick(%v) called Float64 %d times, want 1", ws, c.n)
		}
	}
}

type countingRand struct{ n int }

func (c *countingRand) Float64() float64 { c.n++; return 0.5 }
