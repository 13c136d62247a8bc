package match

// Entry is one registration. Key identifies it uniquely within a Table.
type Entry[K comparable] struct {
	Object, Cmd string
	Pattern     Pattern
	// Slice is false for a full registration (every match receives the
	// message) and true for a slice registration (one weighted draw among
	// all matching slices).
	Slice bool
	// Weight is meaningful for slices only. The Table stores it as given;
	// the caller validates it (finite, >= 0).
	Weight float64
	Key    K
}

// Table indexes entries by (object, cmd, pattern) for fast lookup by
// (object, cmd, id), and by Key. See the package documentation for the
// costs.
//
// The zero Table is empty and ready to use; NewTable is provided for symmetry.
// A Table is not safe for concurrent use: callers must serialise access.
// Methods that only read (Lookup, HasMatch, Get, Len, Range) may run
// concurrently with each other.
type Table[K comparable] struct {
	idx   Index[K]
	nodes map[K]*Item[K]
}

// NewTable returns an empty table.
func NewTable[K comparable]() *Table[K] {
	return &Table[K]{nodes: make(map[K]*Item[K])}
}

// Put inserts e, or replaces the entry with the same Key (its object, cmd,
// pattern, slice flag and weight may all change). It reports whether the key
// was new. The stored Object and Cmd strings are interned per (object, cmd):
// Get, Range and Lookup return strings that may not share memory with the
// ones passed in.
func (t *Table[K]) Put(e Entry[K]) bool {
	if n, ok := t.nodes[e.Key]; ok {
		t.idx.Update(n, e)
		return false
	}
	if t.nodes == nil {
		t.nodes = make(map[K]*Item[K])
	}
	t.nodes[e.Key] = t.idx.Insert(e)
	return true
}

// Delete removes the entry with key and reports whether there was one.
func (t *Table[K]) Delete(key K) bool {
	n, ok := t.nodes[key]
	if !ok {
		return false
	}
	t.idx.Remove(n)
	delete(t.nodes, key)
	return true
}

// Get returns the entry with key.
func (t *Table[K]) Get(key K) (Entry[K], bool) {
	n, ok := t.nodes[key]
	if !ok {
		return Entry[K]{}, false
	}
	return n.entry(), true
}

// Len returns the number of entries, including unsatisfiable ones.
func (t *Table[K]) Len() int { return len(t.nodes) }

// Range calls f for every entry, in unspecified order, until f returns false.
// f must not modify the table; use DeleteFunc to remove while iterating.
func (t *Table[K]) Range(f func(Entry[K]) bool) {
	for _, n := range t.nodes {
		if !f(n.entry()) {
			return
		}
	}
}

// DeleteFunc removes every entry for which del returns true and returns how
// many it removed. del must not modify the table.
func (t *Table[K]) DeleteFunc(del func(Entry[K]) bool) int {
	removed := 0
	for k, n := range t.nodes {
		if del(n.entry()) {
			t.idx.Remove(n)
			delete(t.nodes, k)
			removed++
		}
	}
	return removed
}

// Lookup appends every entry matching (object, cmd, id) to full (entries with
// Slice false) or slices (Slice true) and returns the extended slices; see
// Index.Lookup.
func (t *Table[K]) Lookup(object, cmd string, id int64, full, slices []Entry[K]) ([]Entry[K], []Entry[K]) {
	return t.idx.Lookup(object, cmd, id, full, slices)
}

// HasMatch reports whether any entry, full or slice, matches (object, cmd, id).
func (t *Table[K]) HasMatch(object, cmd string, id int64) bool {
	return t.idx.HasMatch(object, cmd, id)
}
