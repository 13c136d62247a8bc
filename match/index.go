package match

import "strings"

// Index is the lookup structure of a Table without its map from keys to
// entries: Insert returns the entry's *Item, which the caller keeps to
// Update or Remove it. A caller that already holds its entries by some
// key of its own (the directory holds each peer's registrations by ID)
// uses an Index and saves the Table's map, its memory and a probe of it
// per change.
//
// The zero Index is empty and ready to use. Like a Table, an Index is not
// safe for concurrent use; Lookup, HasMatch and Len only read.
type Index[K comparable] struct {
	groups map[groupKey]*group[K]
	n      int       // entries held, unsatisfiable ones included
	last   *group[K] // the group of the last Insert: a delta's entries mostly share one
}

// groupKey is the (object, cmd) pair; a struct key avoids building a string.
type groupKey struct{ object, cmd string }

// group holds the entries of one (object, cmd) with a satisfiable pattern.
type group[K comparable] struct {
	key     groupKey        // interned object and cmd, shared by the entries
	masks   []maskIndex[K]  // distinct masks in use, probed by Lookup
	maskPos map[int64]int32 // mask -> index in masks
}

// maskIndex holds a group's buckets of one mask, by value (id & mask): an
// int64 key, which Go's maps hash and compare on their fast path, where a
// map keyed by the whole Pattern takes the generic one.
type maskIndex[K comparable] struct {
	mask    int64
	buckets map[int64]*bucket[K]
}

// bucket holds the entries of one (object, cmd, mask, value), split by kind.
// The list of its first entry starts in first: most buckets hold one entry
// (an id pattern of one registration), and then the bucket is one
// allocation, and one cache line to read, not two.
type bucket[K comparable] struct {
	full, slice []*Item[K]
	first       [1]*Item[K]
}

// Item is one entry of an Index and its position in the index. Its object
// and cmd are its group's key, not copies: a directory holds an Item for
// every registration on the bus, so each byte here is paid once per
// registration per Notifier.
type Item[K comparable] struct {
	key     K
	g       *group[K]  // its (object, cmd); for an unsatisfiable pattern a group of its own, not in the index; nil once removed
	b       *bucket[K] // nil when not indexed
	pattern Pattern
	weight  float64
	pos     int32 // index in b.full or b.slice
	slice   bool
}

// Entry returns the entry it stores.
func (n *Item[K]) Entry() Entry[K] { return n.entry() }

func (n *Item[K]) entry() Entry[K] {
	return Entry[K]{Object: n.g.key.object, Cmd: n.g.key.cmd, Pattern: n.pattern, Slice: n.slice, Weight: n.weight, Key: n.key}
}

// appendTo appends n's Entry to es, written in place. g is n's group:
// Lookup has it at hand, which spares following n.g for every match.
func (n *Item[K]) appendTo(es []Entry[K], g *group[K]) []Entry[K] {
	es = append(es, Entry[K]{})
	e := &es[len(es)-1]
	e.Object, e.Cmd = g.key.object, g.key.cmd
	e.Pattern, e.Slice, e.Weight, e.Key = n.pattern, n.slice, n.weight, n.key
	return es
}

// Len returns the number of entries, including unsatisfiable ones.
func (x *Index[K]) Len() int { return x.n }

// Insert adds e and returns its Item. Entries with equal keys are distinct
// entries to an Index: the caller keeps keys unique if it wants them so.
// The stored Object and Cmd strings are interned per (object, cmd).
func (x *Index[K]) Insert(e Entry[K]) *Item[K] {
	x.n++
	return x.index(nil, e)
}

// itemBucket is an Item and the bucket it is the first entry of, allocated
// together. Either may outlive the other (the bucket keeps other entries,
// or the item moves to another pattern): the dead half stays allocated
// with the live one, at most one per entry.
type itemBucket[K comparable] struct {
	item Item[K]
	b    bucket[K]
}

// groupOf returns the group an entry of (object, cmd) with pattern p goes
// to, made if there is none; nil for an unsatisfiable p (not indexed).
func (x *Index[K]) groupOf(p Pattern, object, cmd string) *group[K] {
	if !p.Satisfiable() {
		return nil
	}
	g := x.last
	if g == nil || g.key.object != object || g.key.cmd != cmd {
		g = x.group(object, cmd)
		x.last = g
	}
	return g
}

// Update replaces the entry of n, an Item of x not removed, by e (its key
// included).
func (x *Index[K]) Update(n *Item[K], e Entry[K]) {
	if n.g == nil {
		panic("match: Update of a removed Item")
	}
	n.key = e.Key
	if n.b != nil && n.g.key.object == e.Object && n.g.key.cmd == e.Cmd &&
		n.pattern == e.Pattern && n.slice == e.Slice {
		// Same place in the index: update in place (weight only).
		n.weight = e.Weight
		return
	}
	x.unindex(n)
	x.index(n, e)
}

// Remove removes n, an Item of x. Removing it again does nothing.
func (x *Index[K]) Remove(n *Item[K]) {
	if n.g == nil {
		return
	}
	x.unindex(n)
	n.g = nil
	x.n--
}

// Lookup appends every entry matching (object, cmd, id) to full (entries with
// Slice false) or slices (Slice true) and returns the extended slices. The
// order of the appended entries is unspecified. It costs one probe per
// distinct mask in use for (object, cmd) and does not allocate when full and
// slices have enough capacity.
func (x *Index[K]) Lookup(object, cmd string, id int64, full, slices []Entry[K]) ([]Entry[K], []Entry[K]) {
	g := x.groups[groupKey{object, cmd}]
	if g == nil {
		return full, slices
	}
	for i := range g.masks {
		mi := &g.masks[i]
		b := mi.buckets[id&mi.mask]
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
func (x *Index[K]) HasMatch(object, cmd string, id int64) bool {
	g := x.groups[groupKey{object, cmd}]
	if g == nil {
		return false
	}
	for i := range g.masks {
		mi := &g.masks[i]
		if mi.buckets[id&mi.mask] != nil {
			return true
		}
	}
	return false
}

// index links n into the lookup index as e (its key, pattern, slice flag
// and weight) and returns it; a nil n is allocated here, together with its
// bucket when it is the bucket's first entry (most buckets hold one entry,
// an id pattern of one registration). An unsatisfiable pattern is not
// indexed: n gets a group of its own holding clones of the strings, so
// that they do not pin a caller's larger buffer.
func (x *Index[K]) index(n *Item[K], e Entry[K]) *Item[K] {
	g := x.groupOf(e.Pattern, e.Object, e.Cmd)
	var b *bucket[K]
	if g != nil {
		mi := g.maskOf(e.Pattern.Mask)
		if b = mi.buckets[e.Pattern.Value]; b == nil {
			if n == nil {
				ib := &itemBucket[K]{}
				n, b = &ib.item, &ib.b
			} else {
				b = &bucket[K]{}
			}
			mi.addBucket(e.Pattern.Value, b, e.Slice)
		}
	}
	if n == nil {
		n = &Item[K]{}
	}
	n.key, n.pattern, n.slice, n.weight = e.Key, e.Pattern, e.Slice, e.Weight
	if g == nil {
		n.g = &group[K]{key: groupKey{strings.Clone(e.Object), strings.Clone(e.Cmd)}}
		n.b = nil
		return n
	}
	n.link(g, b)
	return n
}

// addBucket puts b, empty, under value, its first entry full or slice.
func (mi *maskIndex[K]) addBucket(value int64, b *bucket[K], slice bool) {
	if slice {
		b.slice = b.first[:0]
	} else {
		b.full = b.first[:0]
	}
	mi.buckets[value] = b
}

// link appends n (its pattern, slice flag and weight set) to b, its
// bucket in g.
func (n *Item[K]) link(g *group[K], b *bucket[K]) {
	if n.slice {
		n.pos = int32(len(b.slice))
		b.slice = append(b.slice, n)
	} else {
		n.pos = int32(len(b.full))
		b.full = append(b.full, n)
	}
	n.g, n.b = g, b
}

// group returns the group of (object, cmd), made if there is none.
func (x *Index[K]) group(object, cmd string) *group[K] {
	gk := groupKey{object, cmd}
	if g := x.groups[gk]; g != nil {
		return g
	}
	if x.groups == nil {
		x.groups = make(map[groupKey]*group[K])
	}
	gk = groupKey{strings.Clone(object), strings.Clone(cmd)}
	g := &group[K]{
		key:     gk,
		maskPos: make(map[int64]int32),
	}
	x.groups[gk] = g
	return g
}

// unindex removes n from the lookup index, dropping its bucket, mask and
// group when they become empty.
func (x *Index[K]) unindex(n *Item[K]) {
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
	i := g.maskPos[n.pattern.Mask]
	mi := &g.masks[i]
	delete(mi.buckets, n.pattern.Value)
	if len(mi.buckets) == 0 {
		g.dropMask(i)
	}
	if len(g.masks) == 0 {
		delete(x.groups, g.key)
		if x.last == g {
			x.last = nil
		}
	}
}

// removeAt swap-removes s[i], fixes the moved item's position and shrinks
// the backing array when it is mostly empty.
func removeAt[K comparable](s []*Item[K], i int) []*Item[K] {
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		s[i].pos = int32(i)
	}
	s[last] = nil
	s = s[:last]
	if c := cap(s); c > 16 && len(s) < c/4 {
		s = append(make([]*Item[K], 0, c/2), s...)
	}
	return s
}

// maskOf returns the buckets of mask in g, made if the mask is new.
func (g *group[K]) maskOf(mask int64) *maskIndex[K] {
	if i, ok := g.maskPos[mask]; ok {
		return &g.masks[i]
	}
	g.maskPos[mask] = int32(len(g.masks))
	g.masks = append(g.masks, maskIndex[K]{mask: mask, buckets: make(map[int64]*bucket[K])})
	return &g.masks[len(g.masks)-1]
}

// dropMask removes the mask at i, whose last bucket went.
func (g *group[K]) dropMask(i int32) {
	mask := g.masks[i].mask
	last := int32(len(g.masks) - 1)
	if i != last {
		g.masks[i] = g.masks[last]
		g.maskPos[g.masks[i].mask] = i
	}
	g.masks[last] = maskIndex[K]{}
	g.masks = g.masks[:last]
	delete(g.maskPos, mask)
}
