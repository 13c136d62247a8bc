package match

import (
	"math"
	"slices"
	"testing"
)

var (
	fuzzObjects = []string{"a", "b", "ab"}
	fuzzCmds    = []string{"x", "y"}
	fuzzMasks   = []int64{0, -1, 0xFF, 0xF0, 1, -256, math.MinInt64, math.MaxInt64}
	fuzzValues  = []int64{0, 1, -1, 0x0F, 0xF0, 0xFF, -256, math.MinInt64, math.MaxInt64, 5, -5}
	fuzzIDs     = []int64{0, 1, -1, 5, -5, 0x0F, 0xF0, 0xFF, 0x1FF, -256, -255, math.MinInt64, math.MaxInt64}
)

// fuzzPattern derives a pattern from one byte: usually satisfiable (value
// masked), sometimes the raw value so that unsatisfiable patterns are stored.
func fuzzPattern(b, v byte) Pattern {
	m := fuzzMasks[int(b)%len(fuzzMasks)]
	val := fuzzValues[int(v)%len(fuzzValues)]
	if b&0x80 == 0 {
		val &= m
	}
	return Pattern{Mask: m, Value: val}
}

// FuzzLookup applies puts and deletes decoded from data to a Table and to a
// plain map, then checks Get, Len, Range, Lookup and HasMatch against a brute
// force scan. Run with: go test -fuzz=FuzzLookup ./match
func FuzzLookup(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 2, 3, 4, 5})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 0x81, 3, 7, 0, 9, 1, 0x82, 1, 2, 1, 1, 3, 0, 0, 0})
	f.Add([]byte{0, 7, 6, 0, 0, 1, 0, 7, 6, 0, 0, 3, 2, 7, 0, 0, 0, 0})
	f.Add([]byte{0, 3, 0x80, 1, 0, 1, 0, 4, 0x80, 1, 0, 1, 2, 3, 0, 0, 0, 0, 2, 4})
	f.Add([]byte("the quick brown fox jumps over the lazy dog 0123456789"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab := NewTable[uint8]()
		model := map[uint8]Entry[uint8]{}
		ids := slices.Clone(fuzzIDs)
		if len(data) > 6*256 { // bound the work per input; 256 operations on 16 keys is plenty
			data = data[:6*256]
		}
		for len(data) >= 6 {
			op, key, pb, vb, oc, w := data[0], data[1]%16, data[2], data[3], data[4], data[5]
			data = data[6:]
			switch op % 4 {
			case 0, 1, 2:
				e := Entry[uint8]{
					Object:  fuzzObjects[int(oc)%len(fuzzObjects)],
					Cmd:     fuzzCmds[int(oc>>4)%len(fuzzCmds)],
					Pattern: fuzzPattern(pb, vb),
					Slice:   op%4 == 1,
					Weight:  float64(w % 4),
					Key:     key,
				}
				_, existed := model[key]
				if isNew := tab.Put(e); isNew == existed {
					t.Fatalf("Put(%+v) new=%v, model existed=%v", e, isNew, existed)
				}
				model[key] = e
			case 3:
				if pb&1 == 0 {
					_, existed := model[key]
					if got := tab.Delete(key); got != existed {
						t.Fatalf("Delete(%d) = %v, want %v", key, got, existed)
					}
					delete(model, key)
				} else {
					removed := tab.DeleteFunc(func(e Entry[uint8]) bool { return e.Key%4 == key%4 })
					want := 0
					for k := range model {
						if k%4 == key%4 {
							delete(model, k)
							want++
						}
					}
					if removed != want {
						t.Fatalf("DeleteFunc removed %d, want %d", removed, want)
					}
				}
			}
			// Ids derived from the data, including negative ones.
			if len(ids) < 64 {
				ids = append(ids, int64(int8(vb))*int64(pb), int64(int8(pb))<<56|int64(vb))
			}
		}
		checkInvariants(t, tab)
		if tab.Len() != len(model) {
			t.Fatalf("Len = %d, model has %d", tab.Len(), len(model))
		}
		var ranged []Entry[uint8]
		tab.Range(func(e Entry[uint8]) bool { ranged = append(ranged, e); return true })
		if len(ranged) != len(model) {
			t.Fatalf("Range gave %d entries, model has %d", len(ranged), len(model))
		}
		for _, e := range ranged {
			if m, ok := model[e.Key]; !ok || m != e {
				t.Fatalf("Range gave %+v, model has %+v", e, m)
			}
			if g, ok := tab.Get(e.Key); !ok || g != e {
				t.Fatalf("Get(%d) = %+v, Range gave %+v", e.Key, g, e)
			}
		}
		var full, slice []Entry[uint8]
		for _, o := range append(fuzzObjects, "", "c") {
			for _, c := range fuzzCmds {
				for _, id := range ids {
					var wantFull, wantSlice []uint8
					for _, e := range ranged {
						if e.Object == o && e.Cmd == c && e.Pattern.Matches(id) {
							if e.Slice {
								wantSlice = append(wantSlice, e.Key)
							} else {
								wantFull = append(wantFull, e.Key)
							}
						}
					}
					full, slice = tab.Lookup(o, c, id, full[:0], slice[:0])
					gotFull, gotSlice := entryKeys(full), entryKeys(slice)
					slices.Sort(wantFull)
					slices.Sort(wantSlice)
					if !slices.Equal(gotFull, wantFull) || !slices.Equal(gotSlice, wantSlice) {
						t.Fatalf("Lookup(%s, %s, %d) = %v / %v, want %v / %v", o, c, id, gotFull, gotSlice, wantFull, wantSlice)
					}
					for _, e := range append(full, slice...) {
						if e != model[e.Key] {
							t.Fatalf("Lookup returned stale %+v, model %+v", e, model[e.Key])
						}
					}
					if want := len(wantFull)+len(wantSlice) > 0; tab.HasMatch(o, c, id) != want {
						t.Fatalf("HasMatch(%s, %s, %d) = %v, want %v", o, c, id, !want, want)
					}
				}
			}
		}
	})
}

func entryKeys(es []Entry[uint8]) []uint8 {
	ks := make([]uint8, 0, len(es))
	for _, e := range es {
		ks = append(ks, e.Key)
	}
	slices.Sort(ks)
	return ks
}
