package route

import "github.com/natsnotifier/notifier/match"

// Ref names one registration on the bus: the node that holds it and the id
// that node gave it. internal/directory uses it (as directory.RegRef) as the
// key of its tables, so its lookups are the planner's input as they are.
type Ref struct {
	Node string
	ID   uint64
}

// Entry is one registration as the directory's lookup returns it.
type Entry = match.Entry[Ref]

// Hop is one message of a publish or an RPC: what one node must deliver.
type Hop struct {
	Node string
	// Full: deliver to every full registration of Node that matches.
	Full bool
	// Slice: deliver to Node's slice registration SliceID, the drawn one.
	Slice   bool
	SliceID uint64 // 0 unless Slice
	// Local: Node is this node (the self given to the planner).
	Local bool
}

// Broadcast reports whether a full notification registration with pattern p
// is reached through the shared fan-out subject rather than a node hop: it
// matches every id. Sender and receiver both decide by it.
func Broadcast(p match.Pattern) bool { return p == match.Pattern{} }

// Publish plans one publish. full and slices are the matching notification
// registrations (full and slice) from the directory, in any order; r draws
// the slice; self is this node's id. It appends the hops to hops and returns
// them, with fan reporting whether some full registration is [Broadcast]
// (send one message on the fan-out subject). An empty result with fan false
// means nothing is registered: not an error for a publish.
func Publish(hops []Hop, full, slices []Entry, r match.Rand, self string) (_ []Hop, fan bool) {
	return plan(hops, full, slices, r, self, true)
}

// RPC plans one RPC: as Publish, except that every full registration is
// reached by a node hop (RPCs have no fan-out subject). An empty result
// means nobody is registered (ErrNoResponders). Keep the slices with
// [Keep] for a redraw.
func RPC(hops []Hop, full, slices []Entry, r match.Rand, self string) []Hop {
	hops, _ = plan(hops, full, slices, r, self, false)
	return hops
}

// Reroute plans the second attempt of a slice notification whose drawn
// registration had left its node before the message arrived: one slice
// drawn among slices, without the full registrations (they got the message
// already). It reports false when slices is empty.
func Reroute(slices []Entry, r match.Rand, self string) (Hop, bool) {
	i := match.Pick(slices, r)
	if i < 0 {
		return Hop{}, false
	}
	return sliceHop(slices[i].Key, self), true
}

func plan(hops []Hop, full, slices []Entry, r match.Rand, self string, fanOut bool) ([]Hop, bool) {
	var pick Ref
	drawn := false
	if i := match.Pick(slices, r); i >= 0 {
		pick, drawn = slices[i].Key, true
	}
	fan := false
	start := len(hops)
	for i := range full {
		node := full[i].Key.Node
		if fanOut && Broadcast(full[i].Pattern) {
			fan = true
			continue
		}
		if hasNode(hops[start:], node) {
			continue
		}
		h := Hop{Node: node, Full: true, Local: node == self}
		if drawn && node == pick.Node {
			h.Slice, h.SliceID = true, pick.ID
			drawn = false // delivered with this hop
		}
		hops = append(hops, h)
	}
	if drawn {
		hops = append(hops, sliceHop(pick, self))
	}
	return hops, fan
}

func sliceHop(ref Ref, self string) Hop {
	return Hop{Node: ref.Node, Slice: true, SliceID: ref.ID, Local: ref.Node == self}
}

// hasNode reports whether some hop goes to node. A plan has one hop per
// node, usually a handful: a scan beats a map.
func hasNode(hops []Hop, node string) bool {
	for i := range hops {
		if hops[i].Node == node {
			return true
		}
	}
	return false
}
