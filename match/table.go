package match

import "strings"

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
// (object, cmd, id). See the package documentation for the costs.
//
// The zero Table is empty and ready to use; NewTable is provided for symmetry.
// A Table is not safe for concurrent use: callers must serialise access.
// Methods that only read (Lookup, HasMatch, Get, Len, Range) may run
// concurrently with each other.
type Table[K comparable] struct {
	nodes  map[K]*node[K]
	groups map[groupKey]*group[K]
}

// groupKey is the (object, cmd) pair; a struct key avoids building a string.
type groupKey struct{ object, cmd string }

// group holds the entries of one (object, cmd) with a satisfiable pattern.
type group[K comparable] struct {
	key     groupKey        // interned object and cmd, shared by the entries
	masks   []maskRef       // distinct masks in use, probed by Lookup
	maskPos map[int64]int32 // mask -> index in masks
	buckets map[Pattern]*bucket[K]
}

type maskRef struct {
	mask int64
	refs int // number of buckets using this mask
}

// bucket holds the entries of one (object, cmd, mask, value), split by kind.
// The list of its first entry starts in first: most buckets hold one entry
// (an id pattern of one registration), and then the bucket is one
// allocation, and one cache line to read, not two.
type bucket[K comparable] struct {
	full, slice []*node[K]
	first       [1]*node[K]
}

// node is the storage of one entry and its position in the index. Its
// object and cmd are its group's key, not copies: a directory holds a node
// for every registration on the bus, so each byte here is paid once per
// registration per Notifier.
type node[K comparable] struct {
	key     K
	g       *group[K]  // its (object, cmd); for an unsatisfiable pattern a group of its own, not in the index
	b       *bucket[K] // nil when not indexed
	pattern Pattern
	weight  float64
	pos     int32 // index in b.full or b.slice
	slice   bool
}

// appendTo appends n's Entry to es, written in place. g is n's group:
// Lookup has it at hand, which spares following n.g for every match.
func (n *node[K]) appendTo(es []Entry[K], g *group[K]) []Entry[K] {
	es = append(es, Entry[K]{})
	e := &es[len(es)-1]
	e.Object, e.Cmd = g.key.object, g.key.cmd
	e.Pattern, e.Slice, e.Weight, e.Key = n.pattern, n.slice, n.weight, n.key
	return es
}

// entry returns the Entry n stores.
func (n *node[K]) entry() Entry[K] {
	return Entry[K]{Object: n.g.key.object, Cmd: n.g.key.cmd, Pattern: n.pattern, Slice: n.slice, Weight: n.weight, Key: n.key}
}

// NewTable returns an empty table.
func NewTable[K comparable]() *Table[K] {
	return &Table[K]{nodes: make(map[K]*node[K]), groups: make(map[groupKey]*group[K])}
}

// Put inserts e, or replaces the entry with the same Key (its object, cmd,
// pattern, slice flag and weight may all change). It reports whether the key
// was new. The stored Object and Cmd strings are interned per (object, cmd):
// Get, Range and Lookup return strings that may not share memory with the
// ones passed in.
func (t *Table[K]) Put(e Entry[K]) bool {
	if t.nodes == nil {
		t.nodes = make(map[K]*node[K])
		t.groups = make(map[groupKey]*group[K])
	}
	n, ok := t.nodes[e.Key]
	if ok {
		if n.b != nil && n.g.key.object == e.Object && n.g.key.cmd == e.Cmd &&
			n.pattern == e.Pattern && n.slice == e.Slice {
			// Same place in the index: update in place (weight only).
			n.weight = e.Weight
			return false
		}
		t.unindex(n)
	} else {
		n = &node[K]{key: e.Key}
		t.nodes[e.Key] = n
	}
	n.pattern, n.slice, n.weight = e.Pattern, e.Slice, e.Weight
	t.index(n, e.Object, e.Cmd)
	return !ok
}

// Delete removes the entry with key and reports whether there was one.
func (t *Table[K]) Delete(key K) bool {
	n, ok := t.nodes[key]
	if !ok {
		return false
	}
	t.unindex(n)
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
			t.unindex(n)
			delete(t.nodes, k)
			removed++
		}
	}
	return removed
}

// Lookup appends every entry matching (object, cmd, id) to full (entries with
// Slice false) or slices (Slice true) and returns the extended slices. The
// order of the appended entries is unspecified. It costs one probe per
// distinct mask in use for (object, cmd) and does not allocate when full and
// slices have enough capacity.
func (t *Table[K]) Lookup(object, cmd string, id int64, full, slices []Entry[K]) ([]Entry[K], []Entry[K]) {
	g := t.groups[groupKey{object, cmd}]
	if g == nil {
		return full, slices
	}
	for i := range g.masks {
		m := g.masks[i].mask
		b := g.buckets[Pattern{Mask: m, Value: id & m}]
		if b == nil {
			continue
		}
		for _, n := range b.full {
			full = n.appendTo(full, g)
		}
		for _, n := range b.slice {
			slices = n.appendTo(slices, g)
		}
	}
	return full, slices
}

// HasMatch reports whether any entry, full or slice, matches (object, cmd, id).
func (t *Table[K]) HasMatch(object, cmd string, id int64) bool {
	g := t.groups[groupKey{object, cmd}]
	if g == nil {
		return false
	}
	for i := range g.masks {
		m := g.masks[i].mask
		if g.buckets[Pattern{Mask: m, Value: id & m}] != nil {
			return true
		}
	}
	return false
}

// index links n (whose pattern, slice flag and weight are set) into the
// lookup index under (object, cmd). An unsatisfiable pattern is not indexed:
// n gets a group of its own holding clones of the strings, so that they do
// not pin a caller's larger buffer.
func (t *Table[K]) index(n *node[K], object, cmd string) {
	if !n.pattern.Satisfiable() {
		n.g = &group[K]{key: groupKey{strings.Clone(object), strings.Clone(cmd)}}
		n.b = nil
		return
	}
	gk := groupKey{object, cmd}
	g := t.groups[gk]
	if g == nil {
		gk = groupKey{strings.Clone(object), strings.Clone(cmd)}
		g = &group[K]{
			key:     gk,
			maskPos: make(map[int64]int32),
			buckets: make(map[Pattern]*bucket[K]),
		}
		t.groups[gk] = g
	}
	b := g.buckets[n.pattern]
	if b == nil {
		b = &bucket[K]{}
		if n.slice {
			b.slice = b.first[:0]
		} else {
			b.full = b.first[:0]
		}
		g.buckets[n.pattern] = b
		g.addMask(n.pattern.Mask)
	}
	if n.slice {
		n.pos = int32(len(b.slice))
		b.slice = append(b.slice, n)
	} else {
		n.pos = int32(len(b.full))
		b.full = append(b.full, n)
	}
	n.g, n.b = g, b
}

// unindex removes n from the lookup index, dropping its bucket, mask and
// group when they become empty.
func (t *Table[K]) unindex(n *node[K]) {
	b, g := n.b, n.g
	if b == nil {
		return
	}
	if n.slice {
		b.slice = removeAt(b.slice, int(n.pos))
	} else {
		b.full = removeAt(b.full, int(n.pos))
	}
	n.b, n.pos = nil, 0
	if len(b.full)+len(b.slice) > 0 {
		return
	}
	delete(g.buckets, n.pattern)
	g.dropMask(n.pattern.Mask)
	if len(g.masks) == 0 {
		delete(t.groups, g.key)
	}
}

// removeAt swap-removes s[i], fixes the moved node's position and shrinks the
// backing array when it is mostly empty.
func removeAt[K comparable](s []*node[K], i int) []*node[K] {
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		s[i].pos = int32(i)
	}
	s[last] = nil
	s = s[:last]
	if c := cap(s); c > 16 && len(s) < c/4 {
		s = append(make([]*node[K], 0, c/2), s...)
	}
	return s
}

func (g *group[K]) addMask(mask int64) {
	if i, ok := g.maskPos[mask]; ok {
		g.masks[i].refs++
		return
	}
	g.maskPos[mask] = int32(len(g.masks))
	g.masks = append(g.masks, maskRef{mask: mask, refs: 1})
}

func (g *group[K]) dropMask(mask int64) {
	i, ok := g.maskPos[mask]
	if !ok {
		return
	}
	if g.masks[i].refs--; g.masks[i].refs > 0 {
		return
	}
	last := int32(len(g.masks) - 1)
	if i != last {
		g.masks[i] = g.masks[last]
		g.maskPos[g.masks[i].mask] = i
	}
	g.masks = g.masks[:last]
	delete(g.maskPos, mask)
}
