package notifier

import (
	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/match"
)

// localTargetsLocked is the receiving side's one lookup, for notifications
// and RPCs alike: the registrations of kind on this Notifier that a routed
// message with frame f for (object, cmd, id) is for. With FlagFull, the
// matching full registrations are appended to dst; for notifications those
// for all ids (Match{}) are left out, since they are reached on the fan-out
// subject instead. With FlagSlice, slice is the drawn slice registration, or
// gone is true if it left (or never matched) before the message arrived.
// Called with n.mu read-locked.
func (n *Notifier) localTargetsLocked(k bus.Kind, f frame.Frame, object, cmd string, id int64, dst []*localReg) (full []*localReg, slice *localReg, gone bool) {
	full = dst
	if f.Flags&frame.FlagFull != 0 {
		bp := entryPool.Get().(*[]match.Entry[*localReg])
		es, _ := n.local[k].Lookup(object, cmd, id, (*bp)[:0], nil)
		for _, e := range es {
			if k == bus.KindPub && e.Pattern == (match.Pattern{}) {
				continue
			}
			full = append(full, e.Key)
		}
		clear(es)
		*bp = es[:0]
		entryPool.Put(bp)
	}
	if f.Flags&frame.FlagSlice != 0 {
		r := n.byID[f.Slice]
		if r == nil || r.key.kind != k || !r.slice || r.key.object != object || r.key.cmd != cmd || !r.key.pattern.Matches(id) {
			return full, nil, true
		}
		slice = r
	}
	return full, slice, false
}
