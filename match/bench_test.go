package match

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// benchKey is a plausible registration key: a destination handle and a
// per-destination registration number.
type benchKey struct {
	dest uint64
	seq  uint64
}

// realisticTable builds n registrations over 10 objects × 10 cmds, with
// masks -1, 0xFF, 0xFFFF and 0, one in four a slice.
func realisticTable(n int) (*Table[benchKey], []string, []string) {
	objects := make([]string, 10)
	cmds := make([]string, 10)
	for i := range 10 {
		objects[i] = fmt.Sprintf("object%d", i)
		cmds[i] = fmt.Sprintf("cmd%d", i)
	}
	masks := []int64{-1, -1, 0xFF, 0xFFFF, -1, 0xFF, -1, 0}
	r := rand.New(rand.NewPCG(3, 4))
	tab := NewTable[benchKey]()
	for i := range n {
		m := masks[i%len(masks)]
		tab.Put(Entry[benchKey]{
			Object:  objects[i%10],
			Cmd:     cmds[(i/10)%10],
			Pattern: Pattern{Mask: m, Value: r.Int64N(1000) & m},
			Slice:   i%4 == 3,
			Weight:  1,
			Key:     benchKey{dest: uint64(i % 97), seq: uint64(i)},
		})
	}
	return tab, objects, cmds
}

// BenchmarkLookup: 10,000 registrations, 100 (object, cmd) groups of four
// masks each, ids drawn from the registered values so lookups find matches.
func BenchmarkLookup(b *testing.B) {
	tab, objects, cmds := realisticTable(10_000)
	r := rand.New(rand.NewPCG(5, 6))
	type q struct {
		object, cmd string
		id          int64
	}
	qs := make([]q, 1024)
	for i := range qs {
		qs[i] = q{objects[r.IntN(10)], cmds[r.IntN(10)], r.Int64N(1000)}
	}
	full := make([]Entry[benchKey], 0, 256)
	slices := make([]Entry[benchKey], 0, 256)
	found := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		x := qs[i&1023]
		full, slices = tab.Lookup(x.object, x.cmd, x.id, full[:0], slices[:0])
		found += len(full) + len(slices)
	}
	b.ReportMetric(float64(found)/float64(b.N), "matches/op")
}

// BenchmarkHasMatch is the fast path on the same table as BenchmarkLookup.
func BenchmarkHasMatch(b *testing.B) {
	tab, objects, cmds := realisticTable(10_000)
	b.ReportAllocs()
	for i := range b.N {
		tab.HasMatch(objects[i%10], cmds[(i/10)%10], int64(i%2000))
	}
}

// BenchmarkLookupManyMasks is the worst case: every registration of one
// (object, cmd) uses its own mask, so a lookup probes every mask.
func BenchmarkLookupManyMasks(b *testing.B) {
	for _, masks := range []int{16, 64, 1024} {
		b.Run(fmt.Sprintf("masks=%d", masks), func(b *testing.B) {
			tab := NewTable[int]()
			for i := range 10_000 {
				m := int64(i%masks)<<8 | 0xFF // distinct masks, low byte always tested
				tab.Put(Entry[int]{Object: "o", Cmd: "c", Pattern: Pattern{Mask: m, Value: int64(i) & m}, Key: i})
			}
			full := make([]Entry[int], 0, 1024)
			sl := make([]Entry[int], 0, 16)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				full, sl = tab.Lookup("o", "c", int64(i), full[:0], sl[:0])
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			es := make([]Entry[int], n)
			for i := range es {
				es[i] = Entry[int]{Slice: true, Weight: float64(i % 3), Key: i}
			}
			r := rand.New(rand.NewPCG(7, 8))
			b.ReportAllocs()
			for range b.N {
				Pick(es, r)
			}
		})
	}
}

// BenchmarkPutDelete measures inserting and deleting one registration in a table
// of 10,000.
func BenchmarkPutDelete(b *testing.B) {
	tab, _, _ := realisticTable(10_000)
	e := Entry[benchKey]{Object: "object1", Cmd: "cmd2", Pattern: Pattern{Mask: 0xFFF, Value: 0x123}, Key: benchKey{dest: 1000}}
	b.ReportAllocs()
	for range b.N {
		tab.Put(e)
		tab.Delete(e.Key)
	}
}

// BenchmarkMemory reports the heap used per registration for a table of
// 100,000 realistic registrations (object and cmd strings are shared).
func BenchmarkMemory(b *testing.B) {
	const n = 100_000
	var ms runtime.MemStats
	perEntry := 0.0
	for range b.N {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		tab, _, _ := realisticTable(n)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		perEntry = float64(ms.HeapAlloc-before) / n
		runtime.KeepAlive(tab)
	}
	b.ReportMetric(perEntry, "B/entry")
}
