package match

import "fmt"

// Pattern selects ids: an id matches when id&Mask == Value.
//
// The zero Pattern (Mask 0, Value 0) matches every id. A Pattern with bits set
// in Value that are clear in Mask matches no id; it is legal and can be stored.
type Pattern struct{ Mask, Value int64 }

// Exact returns the pattern matching exactly id: Pattern{Mask: -1, Value: id}.
func Exact(id int64) Pattern { return Pattern{Mask: -1, Value: id} }

// Matches reports whether id&p.Mask == p.Value.
func (p Pattern) Matches(id int64) bool { return id&p.Mask == p.Value }

// Satisfiable reports whether some id matches p, that is whether Value has no
// bits outside Mask.
func (p Pattern) Satisfiable() bool { return p.Value&^p.Mask == 0 }

// String formats p as mask/value in hexadecimal two's complement, for logs.
func (p Pattern) String() string {
	return fmt.Sprintf("%#x/%#x", uint64(p.Mask), uint64(p.Value))
}
