package match

import (
	"math"
	"testing"
)

func TestPatternMatches(t *testing.T) {
	const minI = math.MinInt64
	tests := []struct {
		name string
		p    Pattern
		id   int64
		want bool
	}{
		{"zero matches 0", Pattern{}, 0, true},
		{"zero matches positive", Pattern{}, 12345, true},
		{"zero matches -1", Pattern{}, -1, true},
		{"zero matches MinInt64", Pattern{}, minI, true},
		{"zero matches MaxInt64", Pattern{}, math.MaxInt64, true},
		{"exact hit", Exact(42), 42, true},
		{"exact miss", Exact(42), 43, false},
		{"exact negative hit", Exact(-7), -7, true},
		{"exact negative miss sign", Exact(-7), 7, false},
		{"exact -1 hit", Exact(-1), -1, true},
		{"exact MinInt64", Exact(minI), minI, true},
		{"exact MaxInt64", Exact(math.MaxInt64), math.MaxInt64, true},
		{"exact MaxInt64 miss MinInt64", Exact(math.MaxInt64), minI, false},
		{"sign bit mask negative", Pattern{Mask: minI, Value: minI}, -1, true},
		{"sign bit mask MinInt64", Pattern{Mask: minI, Value: minI}, minI, true},
		{"sign bit mask positive miss", Pattern{Mask: minI, Value: minI}, 5, false},
		{"sign bit mask value 0 positive", Pattern{Mask: minI, Value: 0}, 5, true},
		{"sign bit mask value 0 negative miss", Pattern{Mask: minI, Value: 0}, -5, false},
		{"low byte hit", Pattern{Mask: 0xFF, Value: 0x12}, 0x3412, true},
		{"low byte miss", Pattern{Mask: 0xFF, Value: 0x12}, 0x3413, false},
		{"low byte of negative", Pattern{Mask: 0xFF, Value: 0xFF}, -1, true},
		{"low byte of -256", Pattern{Mask: 0xFF, Value: 0}, -256, true},
		{"high mask -256 hit", Pattern{Mask: -256, Value: -256}, -1, true},
		{"high mask -256 miss", Pattern{Mask: -256, Value: -256}, -257, false},
		{"high mask -256 value 0", Pattern{Mask: -256, Value: 0}, 255, true},
		{"value outside mask 0", Pattern{Mask: 0, Value: 1}, 1, false},
		{"value outside mask 0 other", Pattern{Mask: 0, Value: 1}, 0, false},
		{"value outside mask low", Pattern{Mask: 0xF0, Value: 0x01}, 0x01, false},
		{"value outside mask low 2", Pattern{Mask: 0xF0, Value: 0x11}, 0x11, false},
		{"value outside sign mask", Pattern{Mask: minI, Value: -1}, -1, false},
		{"negative value positive mask", Pattern{Mask: 0xFF, Value: -1}, -1, false},
	}
	for _, tt := range tests {
		if got := tt.p.Matches(tt.id); got != tt.want {
			t.Errorf("%s: %v.Matches(%d) = %v, want %v", tt.name, tt.p, tt.id, got, tt.want)
		}
	}
}

func TestPatternSatisfiable(t *testing.T) {
	tests := []struct {
		p    Pattern
		want bool
	}{
		{Pattern{}, true},
		{Exact(0), true},
		{Exact(-1), true},
		{Exact(math.MinInt64), true},
		{Pattern{Mask: math.MinInt64, Value: math.MinInt64}, true},
		{Pattern{Mask: 0xFF, Value: 0xFF}, true},
		{Pattern{Mask: -256, Value: -256}, true},
		{Pattern{Mask: 0, Value: 1}, false},
		{Pattern{Mask: 0, Value: -1}, false},
		{Pattern{Mask: 0xF0, Value: 0x01}, false},
		{Pattern{Mask: math.MinInt64, Value: -1}, false},
		{Pattern{Mask: 0xFF, Value: -1}, false},
	}
	for _, tt := range tests {
		if got := tt.p.Satisfiable(); got != tt.want {
			t.Errorf("%v.Satisfiable() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

// TestUnsatisfiableNeverMatches checks Satisfiable against Matches on ids
// around every bit boundary.
func TestUnsatisfiableNeverMatches(t *testing.T) {
	ids := []int64{0, 1, -1, math.MinInt64, math.MaxInt64}
	for b := range 64 {
		ids = append(ids, int64(1)<<b, -(int64(1) << b), int64(1)<<b-1)
	}
	patterns := []Pattern{
		{0, 1}, {0xF0, 0x01}, {math.MinInt64, -1}, {0xFF, -1}, {1, 3}, {-2, 1},
	}
	for _, p := range patterns {
		if p.Satisfiable() {
			t.Fatalf("%v should be unsatisfiable", p)
		}
		for _, id := range ids {
			if p.Matches(id) {
				t.Errorf("unsatisfiable %v matches %d", p, id)
			}
		}
	}
}

func TestExact(t *testing.T) {
	for _, id := range []int64{0, 1, -1, math.MinInt64, math.MaxInt64, 0x0123456789abcdef} {
		if p := Exact(id); p != (Pattern{Mask: -1, Value: id}) {
			t.Errorf("Exact(%d) = %v", id, p)
		}
	}
	// The zero Pattern is the one for every id.
	for _, id := range []int64{0, 1, -1, math.MinInt64, math.MaxInt64} {
		if !(Pattern{}).Matches(id) {
			t.Errorf("Pattern{} does not match %d", id)
		}
	}
}

func TestPatternString(t *testing.T) {
	tests := []struct {
		p    Pattern
		want string
	}{
		{Pattern{}, "0x0/0x0"},
		{Exact(-1), "0xffffffffffffffff/0xffffffffffffffff"},
		{Pattern{Mask: 0xFF, Value: 0x12}, "0xff/0x12"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
