package route

import "github.com/natsnotifier/notifier/match"

// Candidates are the slices an RPC may still draw after its drawn slice
// turned out gone. The zero value has none. It is not safe for concurrent
// use: the caller guards it with the call's lock.
type Candidates struct{ left []Entry }

// Keep returns the candidates for the redraws of a call planned with slices.
// It copies slices (the caller's buffer is reused), and only when there are
// two or more: with one, the drawn slice is the only candidate, and a redraw
// happens only after it is gone.
func Keep(slices []Entry) Candidates {
	if len(slices) < 2 {
		return Candidates{}
	}
	return Candidates{left: append([]Entry(nil), slices...)}
}

// Len returns the number of candidates left.
func (c *Candidates) Len() int { return len(c.left) }

// DropNode removes every candidate held by node: it answered "no
// responders", so it is gone for the rest of the call.
func (c *Candidates) DropNode(node string) {
	c.drop(func(r Ref) bool { return r.Node == node })
}

// Drop removes the candidate ref: its node reported that the registration
// left.
func (c *Candidates) Drop(ref Ref) {
	c.drop(func(r Ref) bool { return r == ref })
}

func (c *Candidates) drop(gone func(Ref) bool) {
	kept := c.left[:0]
	for _, e := range c.left {
		if !gone(e.Key) {
			kept = append(kept, e)
		}
	}
	clear(c.left[len(kept):]) // no stale strings behind the end
	c.left = kept
}

// Draw draws another slice among the candidates left, by weight as the first
// draw, and returns its hop (Slice only: a redraw never repeats the full
// registrations). It reports false when none is left. Call DropNode or Drop
// for what is gone first; Draw itself removes nothing.
func (c *Candidates) Draw(r match.Rand, self string) (Hop, bool) {
	i := match.Pick(c.left, r)
	if i < 0 {
		return Hop{}, false
	}
	return sliceHop(c.left[i].Key, self), true
}
