package match

import (
	"slices"
	"testing"
)

// TestIndexItems checks the Index API the directory uses: items of equal
// keys are distinct entries, Update moves an item (pattern, kind, object)
// or changes its weight in place, Remove takes it out once, and Len and
// Lookup follow.
func TestIndexItems(t *testing.T) {
	var x Index[string]
	lookup := func(object string, id int64) (full, slice []string) {
		f, s := x.Lookup(object, "c", id, nil, nil)
		return keys(f), keys(s)
	}
	a := x.Insert(full("a", "o", "c", Exact(1)))
	a2 := x.Insert(full("a", "o", "c", Exact(1))) // same key: a second entry
	b := x.Insert(slice("b", "o", "c", Pattern{}, 2))
	u := x.Insert(full("u", "o", "c", Pattern{Mask: 1, Value: 2})) // unsatisfiable: held, never found
	if x.Len() != 4 {
		t.Fatalf("Len %d, want 4", x.Len())
	}
	if f, s := lookup("o", 1); !slices.Equal(f, []string{"a", "a"}) || !slices.Equal(s, []string{"b"}) {
		t.Fatalf("Lookup(o, 1) = %v %v", f, s)
	}
	x.Remove(a2)
	x.Remove(a2) // again: nothing
	if x.Len() != 3 {
		t.Fatalf("Len %d after removing one item twice, want 3", x.Len())
	}
	x.Update(b, slice("b", "o", "c", Pattern{}, 5)) // weight only: in place
	if _, s := x.Lookup("o", "c", 7, nil, nil); len(s) != 1 || s[0].Weight != 5 {
		t.Fatalf("weight update: %+v", s)
	}
	x.Update(a, slice("a", "p", "c", Exact(3), 1)) // another object, pattern and kind
	if f, s := lookup("o", 1); f != nil || !slices.Equal(s, []string{"b"}) {
		t.Fatalf("after moving a: Lookup(o, 1) = %v %v", f, s)
	}
	if f, s := lookup("p", 3); f != nil || !slices.Equal(s, []string{"a"}) {
		t.Fatalf("after moving a: Lookup(p, 3) = %v %v", f, s)
	}
	if e := a.Entry(); e.Object != "p" || e.Pattern != Exact(3) || !e.Slice || e.Key != "a" {
		t.Fatalf("moved item holds %+v", e)
	}
	x.Update(u, full("u", "o", "c", Exact(9))) // satisfiable now
	if f, _ := lookup("o", 9); !slices.Equal(f, []string{"u"}) {
		t.Fatalf("Lookup(o, 9) = %v", f)
	}
	for _, it := range []*Item[string]{a, b, u} {
		x.Remove(it)
	}
	if x.Len() != 0 || len(x.groups) != 0 || x.HasMatch("o", "c", 9) {
		t.Fatalf("after removing everything: Len %d, %d groups", x.Len(), len(x.groups))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Update of a removed item did not panic")
		}
	}()
	x.Update(a, full("a", "o", "c", Exact(1)))
}

// TestIndexLastGroup checks the cached group of the last Insert: a group
// deleted when its last entry goes, and made again, is the one inserted
// into, not the stale one.
func TestIndexLastGroup(t *testing.T) {
	var x Index[int]
	it := x.Insert(Entry[int]{Object: "o", Cmd: "c", Pattern: Exact(1), Key: 1})
	x.Remove(it) // the group goes
	x.Insert(Entry[int]{Object: "o", Cmd: "c", Pattern: Exact(2), Key: 2})
	x.Insert(Entry[int]{Object: "o", Cmd: "c", Pattern: Exact(3), Key: 3})
	if !x.HasMatch("o", "c", 2) || !x.HasMatch("o", "c", 3) || len(x.groups) != 1 {
		t.Fatalf("entries lost after the group was made again: %d groups", len(x.groups))
	}
}
