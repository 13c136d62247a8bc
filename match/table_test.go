package match

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// keys returns the sorted keys of es (duplicates kept), or nil for none.
func keys(es []Entry[string]) []string {
	var ks []string
	for _, e := range es {
		ks = append(ks, e.Key)
	}
	slices.Sort(ks)
	return ks
}

// lookupKeys runs Lookup and returns the sorted full and slice keys.
func lookupKeys(tab *Table[string], object, cmd string, id int64) (full, slice []string) {
	f, s := tab.Lookup(object, cmd, id, nil, nil)
	return keys(f), keys(s)
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func putAll(t *testing.T, tab *Table[string], es ...Entry[string]) {
	t.Helper()
	for _, e := range es {
		if !tab.Put(e) {
			t.Fatalf("Put(%+v) reported an existing key", e)
		}
	}
	checkInvariants(t, tab)
}

func full(key, object, cmd string, p Pattern) Entry[string] {
	return Entry[string]{Object: object, Cmd: cmd, Pattern: p, Key: key}
}

func slice(key, object, cmd string, p Pattern, w float64) Entry[string] {
	return Entry[string]{Object: object, Cmd: cmd, Pattern: p, Slice: true, Weight: w, Key: key}
}

// checkInvariants verifies the index against the entries.
func checkInvariants[K comparable](t *testing.T, tab *Table[K]) {
	t.Helper()
	indexed := 0
	for k, n := range tab.nodes {
		e := n.entry()
		if e.Key != k {
			t.Fatalf("node under key %v holds key %v", k, e.Key)
		}
		if !e.Pattern.Satisfiable() {
			if n.b != nil || tab.idx.groups[n.g.key] == n.g {
				t.Fatalf("unsatisfiable %v is indexed", e.Pattern)
			}
			continue
		}
		indexed++
		g := tab.idx.groups[groupKey{e.Object, e.Cmd}]
		var b *bucket[K]
		if g != nil {
			if i, ok := g.maskPos[e.Pattern.Mask]; ok {
				b = g.masks[i].buckets[e.Pattern.Value]
			}
		}
		if g == nil || g != n.g || b != n.b {
			t.Fatalf("entry %v not in its group/bucket", e)
		}
		list := n.b.full
		if e.Slice {
			list = n.b.slice
		}
		if int(n.pos) >= len(list) || list[n.pos] != n {
			t.Fatalf("entry %v at wrong position %d", e, n.pos)
		}
	}
	inBuckets := 0
	for gk, g := range tab.idx.groups {
		if g.key != gk || len(g.masks) == 0 || len(g.maskPos) != len(g.masks) {
			t.Fatalf("group %v: bad key, no mask, or %d masks at %d positions", gk, len(g.masks), len(g.maskPos))
		}
		for i, mi := range g.masks {
			if g.maskPos[mi.mask] != int32(i) || len(mi.buckets) == 0 {
				t.Fatalf("group %v: mask %#x at %d, listed at %d, %d buckets", gk, mi.mask, i, g.maskPos[mi.mask], len(mi.buckets))
			}
			for v, b := range mi.buckets {
				p := Pattern{Mask: mi.mask, Value: v}
				if len(b.full)+len(b.slice) == 0 {
					t.Fatalf("group %v: empty bucket %v", gk, p)
				}
				for _, n := range b.full {
					if n.slice || n.pattern != p {
						t.Fatalf("bucket %v holds %v in full", p, n.entry())
					}
				}
				for _, n := range b.slice {
					if !n.slice || n.pattern != p {
						t.Fatalf("bucket %v holds %v in slice", p, n.entry())
					}
				}
				inBuckets += len(b.full) + len(b.slice)
			}
		}
	}
	if inBuckets != indexed {
		t.Fatalf("%d entries in buckets, %d indexed", inBuckets, indexed)
	}
}

// fixture is a table exercising every matching rule.
func fixture(t *testing.T) *Table[string] {
	tab := NewTable[string]()
	putAll(t, tab,
		full("all", "o", "c", Pattern{}),
		full("exact5", "o", "c", Exact(5)),
		full("exact-5", "o", "c", Exact(-5)),
		full("exactMin", "o", "c", Exact(math.MinInt64)),
		full("neg", "o", "c", Pattern{Mask: math.MinInt64, Value: math.MinInt64}),
		full("low05", "o", "c", Pattern{Mask: 0xFF, Value: 0x05}),
		full("unsat", "o", "c", Pattern{Mask: 0xF0, Value: 0x01}),
		full("unsat0", "o", "c", Pattern{Mask: 0, Value: 1}),
		slice("s-low05", "o", "c", Pattern{Mask: 0xFF, Value: 0x05}, 1),
		slice("s-exact5", "o", "c", Exact(5), 2),
		slice("s-high", "o", "c", Pattern{Mask: -256, Value: -256}, 0),
		full("d-exact5", "o", "d", Exact(5)),
		full("p-exact5", "p", "c", Exact(5)),
		slice("p-s-all", "p", "c", Pattern{}, 1),
	)
	return tab
}

func TestTableLookupRules(t *testing.T) {
	tab := fixture(t)
	tests := []struct {
		object, cmd string
		id          int64
		full, slice string // comma-separated sorted keys
	}{
		{"o", "c", 0, "all", ""},
		{"o", "c", 5, "all,exact5,low05", "s-exact5,s-low05"},
		{"o", "c", 0x105, "all,low05", "s-low05"},
		{"o", "c", 6, "all", ""},
		{"o", "c", -5, "all,exact-5,neg", "s-high"},
		{"o", "c", -1, "all,neg", "s-high"},
		{"o", "c", -256, "all,neg", "s-high"},
		{"o", "c", -257, "all,neg", ""},
		{"o", "c", -251, "all,low05,neg", "s-high,s-low05"}, // -251 = 0x...ff05
		{"o", "c", math.MinInt64, "all,exactMin,neg", ""},
		{"o", "c", math.MaxInt64, "all", ""},
		{"o", "c", 1, "all", ""}, // the unsatisfiable 0xF0/0x01 and 0/1 never match
		{"o", "c", 0x11, "all", ""},
		{"o", "d", 5, "d-exact5", ""},
		{"o", "d", 6, "", ""},
		{"p", "c", 5, "p-exact5", "p-s-all"},
		{"p", "c", -9, "", "p-s-all"},
		{"p", "d", 5, "", ""},
		{"x", "c", 5, "", ""},
		{"", "", 0, "", ""},
		{"oc", "", 5, "", ""}, // no confusion from concatenating object and cmd
		{"", "oc", 5, "", ""},
	}
	for _, tt := range tests {
		f, s := lookupKeys(tab, tt.object, tt.cmd, tt.id)
		if !slices.Equal(f, split(tt.full)) || !slices.Equal(s, split(tt.slice)) {
			t.Errorf("Lookup(%q, %q, %d) = full %v slice %v, want %v / %v", tt.object, tt.cmd, tt.id, f, s, split(tt.full), split(tt.slice))
		}
		if want := tt.full != "" || tt.slice != ""; tab.HasMatch(tt.object, tt.cmd, tt.id) != want {
			t.Errorf("HasMatch(%q, %q, %d) = %v, want %v", tt.object, tt.cmd, tt.id, !want, want)
		}
	}
}

func TestTableUnsatisfiableStored(t *testing.T) {
	tab := NewTable[string]()
	u := full("u", "o", "c", Pattern{Mask: 0xF0, Value: 0x01})
	putAll(t, tab, u, slice("us", "o", "c", Pattern{Mask: 0, Value: -1}, 3))
	if tab.Len() != 2 {
		t.Fatalf("Len = %d, want 2", tab.Len())
	}
	if got, ok := tab.Get("u"); !ok || got != u {
		t.Fatalf("Get = %+v, %v; want %+v", got, ok, u)
	}
	n := 0
	tab.Range(func(Entry[string]) bool { n++; return true })
	if n != 2 {
		t.Fatalf("Range visited %d, want 2", n)
	}
	for _, id := range []int64{0, 1, 0x11, -1} {
		if f, s := lookupKeys(tab, "o", "c", id); f != nil || s != nil || tab.HasMatch("o", "c", id) {
			t.Fatalf("unsatisfiable matched id %d: %v %v", id, f, s)
		}
	}
	if !tab.Delete("u") || tab.Len() != 1 {
		t.Fatalf("Delete(u) failed, Len = %d", tab.Len())
	}
	if tab.DeleteFunc(func(e Entry[string]) bool { return e.Slice }) != 1 || tab.Len() != 0 {
		t.Fatalf("DeleteFunc did not remove the unsatisfiable slice")
	}
	checkInvariants(t, tab)
}

// A destination under two overlapping patterns is two keys; both are returned.
func TestTableOverlappingPatternsDeliverTwice(t *testing.T) {
	tab := NewTable[string]()
	putAll(t, tab,
		full("dest@all", "o", "c", Pattern{}),
		full("dest@1", "o", "c", Exact(1)),
		full("dest@odd", "o", "c", Pattern{Mask: 1, Value: 1}),
	)
	tests := []struct {
		id   int64
		want string
	}{
		{1, "dest@1,dest@all,dest@odd"},
		{3, "dest@all,dest@odd"},
		{2, "dest@all"},
		{-1, "dest@all,dest@odd"},
	}
	for _, tt := range tests {
		if f, _ := lookupKeys(tab, "o", "c", tt.id); !slices.Equal(f, split(tt.want)) {
			t.Errorf("id %d: got %v, want %s", tt.id, f, tt.want)
		}
	}
}

func TestTablePutSameKeyTwice(t *testing.T) {
	tab := NewTable[string]()
	e := full("k", "o", "c", Exact(7))
	if !tab.Put(e) {
		t.Fatal("first Put reported existing key")
	}
	if tab.Put(e) {
		t.Fatal("second Put reported new key")
	}
	checkInvariants(t, tab)
	if tab.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tab.Len())
	}
	if f, s := lookupKeys(tab, "o", "c", 7); !slices.Equal(f, []string{"k"}) || s != nil {
		t.Fatalf("Lookup = %v %v, want [k] once", f, s)
	}
}

func TestTablePutReplaces(t *testing.T) {
	tests := []struct {
		name     string
		from, to Entry[string]
	}{
		{"pattern", full("k", "o", "c", Exact(1)), full("k", "o", "c", Exact(2))},
		{"mask", full("k", "o", "c", Exact(1)), full("k", "o", "c", Pattern{Mask: 0xF, Value: 2})},
		{"full to slice", full("k", "o", "c", Exact(1)), slice("k", "o", "c", Exact(1), 3)},
		{"slice to full", slice("k", "o", "c", Exact(1), 3), full("k", "o", "c", Exact(1))},
		{"weight", slice("k", "o", "c", Exact(1), 3), slice("k", "o", "c", Exact(1), 0)},
		{"object", full("k", "o", "c", Exact(1)), full("k", "p", "c", Exact(1))},
		{"cmd", full("k", "o", "c", Exact(1)), full("k", "o", "d", Exact(1))},
		{"to unsatisfiable", full("k", "o", "c", Exact(1)), full("k", "o", "c", Pattern{Mask: 0, Value: 2})},
		{"from unsatisfiable", full("k", "o", "c", Pattern{Mask: 0, Value: 2}), full("k", "o", "c", Exact(1))},
		{"everything", slice("k", "o", "c", Exact(-1), 1), full("k", "p", "d", Pattern{Mask: math.MinInt64, Value: 0})},
	}
	ids := []int64{1, 2, -1, 0x12, math.MaxInt64}
	for _, tt := range tests {
		tab := NewTable[string]()
		// A neighbour in the same bucket as from, so swap-removal is exercised.
		other := tt.from
		other.Key = "other"
		putAll(t, tab, other, tt.from)
		if tab.Put(tt.to) {
			t.Errorf("%s: replacing Put reported a new key", tt.name)
		}
		checkInvariants(t, tab)
		if got, _ := tab.Get("k"); got != tt.to || tab.Len() != 2 {
			t.Errorf("%s: Get = %+v, Len %d; want %+v, 2", tt.name, got, tab.Len(), tt.to)
		}
		for _, e := range []Entry[string]{tt.from, tt.to} {
			for _, id := range ids {
				f, s := tab.Lookup(e.Object, e.Cmd, id, nil, nil)
				var got []Entry[string]
				for _, x := range append(f, s...) {
					if x.Key == "k" {
						got = append(got, x)
					}
				}
				wantHit := tt.to.Object == e.Object && tt.to.Cmd == e.Cmd && tt.to.Pattern.Matches(id)
				if wantHit != (len(got) == 1) || len(got) > 1 {
					t.Errorf("%s: Lookup(%s,%s,%d) found k %d times, want hit %v", tt.name, e.Object, e.Cmd, id, len(got), wantHit)
				} else if wantHit && (got[0] != tt.to || slices.Contains(f, tt.to) == tt.to.Slice) {
					t.Errorf("%s: Lookup returned %+v in wrong list or stale, want %+v", tt.name, got[0], tt.to)
				}
			}
		}
	}
}

func TestTableObjectCmdIsolation(t *testing.T) {
	tab := NewTable[string]()
	var es []Entry[string]
	for _, o := range []string{"a", "b", "ab"} {
		for _, c := range []string{"x", "y", "bx"} {
			es = append(es, full(o+"/"+c, o, c, Pattern{}), slice(o+"/"+c+"/s", o, c, Pattern{}, 1))
		}
	}
	putAll(t, tab, es...)
	for _, o := range []string{"a", "b", "ab"} {
		for _, c := range []string{"x", "y", "bx"} {
			f, s := lookupKeys(tab, o, c, 9)
			if !slices.Equal(f, []string{o + "/" + c}) || !slices.Equal(s, []string{o + "/" + c + "/s"}) {
				t.Errorf("Lookup(%s, %s) = %v %v", o, c, f, s)
			}
		}
	}
}

func TestTableDelete(t *testing.T) {
	tab := fixture(t)
	n := tab.Len()
	if tab.Delete("missing") || tab.Len() != n {
		t.Fatal("Delete of a missing key changed the table")
	}
	if !tab.Delete("exact5") || tab.Delete("exact5") {
		t.Fatal("Delete(exact5) twice: want true then false")
	}
	if _, ok := tab.Get("exact5"); ok || tab.Len() != n-1 {
		t.Fatal("deleted entry still present")
	}
	checkInvariants(t, tab)
	if f, s := lookupKeys(tab, "o", "c", 5); !slices.Equal(f, []string{"all", "low05"}) || !slices.Equal(s, []string{"s-exact5", "s-low05"}) {
		t.Fatalf("after Delete, Lookup = %v %v", f, s)
	}
	// Deleting the last user of mask 0xFF drops the mask from the group.
	tab.Delete("low05")
	tab.Delete("s-low05")
	checkInvariants(t, tab)
	for _, m := range tab.idx.groups[groupKey{"o", "c"}].masks {
		if m.mask == 0xFF {
			t.Fatal("mask 0xFF still probed after its last entry was deleted")
		}
	}
	tab.Range(func(e Entry[string]) bool { tab.Delete(e.Key); return true }) // deleting during map range is allowed in Go
	checkInvariants(t, tab)
	if tab.Len() != 0 || len(tab.idx.groups) != 0 {
		t.Fatalf("after deleting everything: Len %d, %d groups", tab.Len(), len(tab.idx.groups))
	}
}

func TestTableDeleteFunc(t *testing.T) {
	tab := fixture(t)
	n := tab.Len()
	removed := tab.DeleteFunc(func(e Entry[string]) bool { return e.Slice })
	if removed != 4 || tab.Len() != n-4 {
		t.Fatalf("DeleteFunc removed %d (Len %d), want 4 (Len %d)", removed, tab.Len(), n-4)
	}
	checkInvariants(t, tab)
	tab.Range(func(e Entry[string]) bool {
		if e.Slice {
			t.Errorf("slice %s survived", e.Key)
		}
		return true
	})
	if f, s := lookupKeys(tab, "o", "c", 5); !slices.Equal(f, []string{"all", "exact5", "low05"}) || s != nil {
		t.Fatalf("after DeleteFunc, Lookup = %v %v", f, s)
	}
	if tab.DeleteFunc(func(Entry[string]) bool { return false }) != 0 {
		t.Fatal("DeleteFunc(false) removed something")
	}
	if tab.DeleteFunc(func(Entry[string]) bool { return true }) != n-4 || tab.Len() != 0 || len(tab.idx.groups) != 0 {
		t.Fatal("DeleteFunc(true) did not empty the table")
	}
}

func TestTableRange(t *testing.T) {
	tab := fixture(t)
	seen := map[string]Entry[string]{}
	tab.Range(func(e Entry[string]) bool {
		if _, dup := seen[e.Key]; dup {
			t.Errorf("Range visited %s twice", e.Key)
		}
		seen[e.Key] = e
		return true
	})
	if len(seen) != tab.Len() {
		t.Fatalf("Range visited %d, Len %d", len(seen), tab.Len())
	}
	for k, e := range seen {
		if got, ok := tab.Get(k); !ok || got != e {
			t.Errorf("Range gave %+v, Get gives %+v", e, got)
		}
	}
	calls := 0
	tab.Range(func(Entry[string]) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("Range continued after false: %d calls", calls)
	}
}

func TestTableZeroValue(t *testing.T) {
	var tab Table[int]
	if f, s := tab.Lookup("o", "c", 1, nil, nil); f != nil || s != nil || tab.HasMatch("o", "c", 1) || tab.Len() != 0 || tab.Delete(1) {
		t.Fatal("empty zero Table is not empty")
	}
	if !tab.Put(Entry[int]{Object: "o", Cmd: "c", Key: 1}) || !tab.HasMatch("o", "c", 1) {
		t.Fatal("zero Table does not accept Put")
	}
}

func TestTableLookupAppendsWithoutAllocating(t *testing.T) {
	tab := fixture(t)
	f := append(make([]Entry[string], 0, 16), full("pre", "", "", Pattern{}))
	s := make([]Entry[string], 0, 16)
	f, s = tab.Lookup("o", "c", 5, f, s)
	if keys(f)[len(keys(f))-1] != "pre" || len(f) != 4 || len(s) != 2 {
		t.Fatalf("Lookup lost the existing content or appended wrongly: %v %v", keys(f), keys(s))
	}
	allocs := testing.AllocsPerRun(100, func() {
		f, s = tab.Lookup("o", "c", 5, f[:0], s[:0])
		_ = tab.HasMatch("o", "c", -5)
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocated %v times", allocs)
	}
}

func TestTableInternsStrings(t *testing.T) {
	tab := NewTable[int]()
	for i := range 3 {
		obj := strings.Repeat("o", 3) // a new allocation each time
		tab.Put(Entry[int]{Object: obj, Cmd: strings.Clone("c"), Pattern: Exact(int64(i)), Key: i})
	}
	a, _ := tab.Get(0)
	for i := 1; i < 3; i++ {
		b, _ := tab.Get(i)
		if unsafe.StringData(a.Object) != unsafe.StringData(b.Object) || unsafe.StringData(a.Cmd) != unsafe.StringData(b.Cmd) {
			t.Fatalf("entry %d does not share the interned object/cmd", i)
		}
	}
}

func TestTableSwapRemoveKeepsPositions(t *testing.T) {
	tab := NewTable[int]()
	const n = 100
	for i := range n {
		tab.Put(Entry[int]{Object: "o", Cmd: "c", Pattern: Exact(1), Slice: i%2 == 0, Key: i})
	}
	for i := 0; i < n; i += 3 {
		tab.Delete(i)
		checkInvariants(t, tab)
	}
	f, s := tab.Lookup("o", "c", 1, nil, nil)
	if len(f)+len(s) != tab.Len() || tab.Len() != n-(n+2)/3 {
		t.Fatalf("Lookup found %d, Len %d", len(f)+len(s), tab.Len())
	}
}
