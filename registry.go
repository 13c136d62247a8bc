package notifier

// The registry: this Notifier's own registrations, as the receiving side
// looks them up, and the few operations that change them.

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
	"github.com/natsnotifier/notifier/internal/frame"
	"github.com/natsnotifier/notifier/internal/route"
	"github.com/natsnotifier/notifier/match"
)

// registry is the Notifier's own registrations: the local tables the
// receiving side looks up, by kind, and the indexes by ID (the directory's
// key) and by identity (regKey). mu also guards closed, which Close sets once
// no handler goroutine may start any more.
type registry struct {
	mu     sync.RWMutex
	closed bool
	local  [2]*match.Table[*localReg]
	byID   map[uint64]*localReg
	byKey  map[regKey]*localReg
	fans   map[*localReg]struct{} // the registrations with a fan-out subscription (localReg.fan)
	nextID uint64
}

// init makes the registry's tables.
func (r *registry) init() {
	r.byID = make(map[uint64]*localReg)
	r.byKey = make(map[regKey]*localReg)
	r.fans = make(map[*localReg]struct{})
	for k := range r.local {
		r.local[k] = match.NewTable[*localReg]()
	}
}

// regKey identifies a registration: registering the same key again replaces
// the earlier mode (full or slice) and weight.
type regKey struct {
	kind    bus.Kind
	object  string
	cmd     string
	pattern Match
	dest    any
}

// lookupLocked is the receiving side's one lookup, for notifications and
// RPCs alike: the registrations of kind that a routed message with frame f
// for (object, cmd, id) is for. With FlagFull, the matching full
// registrations are appended to dst; for notifications those for all ids
// (Match{}) are left out, since they are reached on the fan-out subject
// instead. With FlagSlice, slice is the drawn slice registration, or gone is
// true if it left (or never matched) before the message arrived. Called with
// g.mu read-locked.
func (g *registry) lookupLocked(k bus.Kind, f frame.Frame, object, cmd string, id int64, dst []*localReg) (full []*localReg, slice *localReg, gone bool) {
	full = dst
	if f.Flags&frame.FlagFull != 0 {
		bp := entryPool.Get().(*[]match.Entry[*localReg])
		es, _ := g.local[k].Lookup(object, cmd, id, (*bp)[:0], nil)
		for _, e := range es {
			if k == bus.KindPub && route.Broadcast(e.Pattern) {
				continue
			}
			full = append(full, e.Key)
		}
		clear(es)
		*bp = es[:0]
		entryPool.Put(bp)
	}
	if f.Flags&frame.FlagSlice != 0 {
		r := g.byID[f.Slice]
		if r == nil || r.key.kind != k || !r.slice || r.key.object != object || r.key.cmd != cmd || !r.key.pattern.Matches(id) {
			return full, nil, true
		}
		slice = r
	}
	return full, slice, false
}

// localReg is one registration of this Notifier, with its delivery queue.
type localReg struct {
	id        uint64
	key       regKey
	slice     bool    // guarded by Notifier.mu
	weight    float64 // guarded by Notifier.mu
	sub       Subscriber
	resp      Responder
	queueSize int

	removed      atomic.Bool
	removedSlice bool               // a slice when removed; written before removed is set
	fan          *nats.Subscription // a broadcast registration's own fan-out subscription; guarded by Notifier.mu

	mu      sync.Mutex // guards the queue
	queue   []delivery // FIFO, at most queueSize waiting
	spare   []delivery // an empty buffer to swap in when a batch is taken
	running bool       // a drain goroutine owns the queue

	// inflight counts the notifications of the batch being delivered that
	// are not done yet: with the queue, they make the bound of WithQueueSize.
	inflight atomic.Int32
	// bytes is the memory the queue and the batch hold, at most maxQueueBytes.
	bytes atomic.Int64
}

func (r *localReg) wire() directory.Reg {
	return directory.Reg{
		ID: r.id, Kind: r.key.kind, Object: r.key.object, Cmd: r.key.cmd,
		Mask: r.key.pattern.Mask, Value: r.key.pattern.Value,
		Slice: r.slice, Weight: r.weight,
	}
}

// broadcast reports whether r is reached through the fan-out subject.
// Called with Notifier.mu held.
func (r *localReg) broadcast() bool {
	return r.key.kind == bus.KindPub && !r.slice && route.Broadcast(r.key.pattern.pattern())
}

// entryPool holds lookup buffers; a lookup result is short-lived.
var entryPool = sync.Pool{New: func() any {
	s := make([]match.Entry[*localReg], 0, 16)
	return &s
}}

// getLocked returns the registration with key, or a new one with isNew,
// which is in no table until putLocked. Called with g.mu locked.
func (g *registry) getLocked(key regKey, queueSize int) (r *localReg, isNew bool) {
	if r := g.byKey[key]; r != nil {
		return r, false
	}
	g.nextID++
	r = &localReg{id: g.nextID, key: key, queueSize: queueSize}
	if key.kind == bus.KindRPC {
		r.resp = key.dest.(Responder)
	} else {
		r.sub = key.dest.(Subscriber)
	}
	return r, true
}

// putLocked enters r, new or with a changed mode or weight, in the tables.
// Called with g.mu locked.
func (g *registry) putLocked(r *localReg) {
	g.byKey[r.key] = r
	g.byID[r.id] = r
	k := r.key
	g.local[k.kind].Put(match.Entry[*localReg]{Object: k.object, Cmd: k.cmd, Pattern: k.pattern.pattern(), Slice: r.slice, Weight: r.weight, Key: r})
}

// deleteLocked takes r out of the tables. Called with g.mu locked.
func (g *registry) deleteLocked(r *localReg) {
	delete(g.byKey, r.key)
	delete(g.byID, r.id)
	g.local[r.key.kind].Delete(r)
}
