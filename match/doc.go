// Package match is the pure matcher of the Notifier: it stores registrations
// addressed by (object, cmd, pattern) and finds the ones an (object, cmd, id)
// reaches, and it makes the weighted random choice among matching slices.
//
// The package imports only the standard library, starts no goroutines, reads
// no clock and takes its random source as a parameter, so every rule can be
// tested exhaustively and by fuzzing.
//
// Its exported names are its whole API, used by internal/directory (the
// directory's tables) and by the Notifier (its local table and the draw):
// [Pattern] and [Exact], [Entry], [Table] with [NewTable], [Index] with its
// [Item] (a Table without the map from keys, for a caller that keeps its
// entries by a key of its own), and [Pick] with its [Rand]. There is no exported variable: the pattern for every id is the
// zero Pattern{}.
//
// # Matching
//
// A [Pattern] {Mask, Value} matches an id when id&Mask == Value, in two's
// complement int64 arithmetic, so negative ids and masks work as in the
// original Python Notifier. Pattern{} matches every id and [Exact] matches
// one. A Pattern whose Value has bits outside Mask is legal but never matches
// ([Pattern.Satisfiable] reports false).
//
// # Table
//
// A [Table] holds [Entry] values, each identified by a caller-chosen
// comparable Key. A destination registered under two overlapping patterns is
// two entries (two keys) and is returned twice by [Table.Lookup]; putting the
// same key again replaces the entry, so a registration repeated with the same
// key is idempotent.
//
// The index is a map from (object, cmd) to a group that holds, for each
// distinct mask in use by that group's entries, a map from id&mask to the
// entries (an int64 key: Go's maps take their fast path for it). A lookup therefore costs one map probe to
// find the group plus one probe per distinct mask in the group, independent of
// the number of entries; it does not allocate when the destination slices have
// room. Put, Delete and Get are O(1) expected (Put and Delete of the last
// entry using a mask also update the group's mask list in O(1)).
//
// A Table is not safe for concurrent use: callers serialise access (a
// sync.RWMutex with Lookup, HasMatch, Get, Len and Range under the read lock
// is fine, since those do not modify the table).
//
// # Weighted choice
//
// [Pick] chooses one of the matching slice entries with probability
// proportional to its Weight. Weight 0 is standby: such an entry is chosen only
// when every candidate has weight 0, and then uniformly.
package match
