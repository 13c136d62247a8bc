package directory

import (
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/route"
	"github.com/natsnotifier/notifier/internal/wire"
	"github.com/natsnotifier/notifier/match"
)

// Reg is one registration as the directory knows it. ID is unique within the
// node that owns it.
type Reg struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Kind     bus.Kind
	Object   string
	Cmd      string
	Mask     int64
	Value    int64
	Slice    bool
	Weight   float64
}

// regFields is the length of Reg's msgpack array.
const regFields = 8

// EncodeMsgpack writes r as the array of its fields, the form the struct
// tag describes, without reflection. Peers read it with Reg.read.
func (r Reg) EncodeMsgpack(e *msgpack.Encoder) error {
	for _, err := range []error{
		e.EncodeArrayLen(regFields),
		e.EncodeUint(r.ID), e.EncodeUint(uint64(r.Kind)),
		e.EncodeString(r.Object), e.EncodeString(r.Cmd),
		e.EncodeInt(r.Mask), e.EncodeInt(r.Value),
		e.EncodeBool(r.Slice), e.EncodeFloat64(r.Weight),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads what EncodeMsgpack writes, by Reg.read, so that
// msgpack.Unmarshal of a Reg follows the rules the peers decode by (fields
// beyond the eight known skipped, missing ones zero). The directory's own
// messages are decoded without msgpack.
func (r *Reg) DecodeMsgpack(d *msgpack.Decoder) error {
	raw, err := d.DecodeRaw()
	if err != nil {
		return err
	}
	rd := wire.NewReader(raw)
	r.read(&rd, nil)
	return rd.Done()
}

// RegRef names one registration on the bus. It is the routing planner's
// Ref, so that a lookup's entries feed route.Publish and route.RPC as they
// are, without a copy.
type RegRef = route.Ref

// Entry is a directory lookup result.
type Entry = match.Entry[RegRef]

func (r Reg) entry(node string) Entry {
	return Entry{
		Object:  r.Object,
		Cmd:     r.Cmd,
		Pattern: match.Pattern{Mask: r.Mask, Value: r.Value},
		Slice:   r.Slice,
		Weight:  r.Weight,
		Key:     RegRef{Node: node, ID: r.ID},
	}
}

// Announcement types.
const (
	annHeartbeat uint8 = iota + 1 // the current version only: a peer holding less fetches the table
	annDelta                      // a change: Puts and Dels take the table from Ver-1 to Ver
	annBye                        // the node leaves
	annFull                       // the whole table at Ver in Puts (a join, or a node that was dropped)
	annDrop                       // Node's probes found Target gone (Ver: the version of Target it held)
)

// announcement is published on bus.Subjects.Ann by its node.
type announcement struct {
	_msgpack struct{} `msgpack:",as_array"`
	Type     uint8
	Node     string
	Ver      uint64
	Puts     []Reg
	Dels     []uint64
	Target   string // annDrop: the node found gone
	Proven   bool   // annDrop: NATS said "no responders" (not only unanswered probes)

	retained bool // kept beyond its handler (buffered): its Puts are not reused
}

// ack confirms that Node has applied the announcer's table up to Ver.
type ack struct {
	_msgpack struct{} `msgpack:",as_array"`
	Node     string
	Ver      uint64
}

// probe is the request of a ring probe, sent to bus.Subjects.NodeProbe of a
// successor: the prober's name and its digest of the bus (see Directory).
// With Vector set the answer lists every node the successor knows.
type probe struct {
	_msgpack struct{} `msgpack:",as_array"`
	Node     string
	Digest   uint64
	Vector   bool
}

// probeReply answers a probe.
type probeReply struct {
	_msgpack struct{} `msgpack:",as_array"`
	Node     string
	Ver      uint64   // the answering node's table version
	Digest   uint64   // its digest of the bus
	Knows    bool     // it knows the prober
	Nodes    []string // with probe.Vector: every node it knows, itself included
	Vers     []uint64 // the versions it holds of Nodes
}

// tablePart is one message of a streamed table; Parts messages make a table.
type tablePart struct {
	_msgpack struct{} `msgpack:",as_array"`
	Node     string
	Ver      uint64
	Part     int
	Parts    int
	Regs     []Reg
}

// memberList answers bus.Subjects.Members.
type memberList struct {
	_msgpack struct{} `msgpack:",as_array"`
	Nodes    []string
}

// numKinds is the number of registration kinds: tables are indexed by Kind.
const numKinds = bus.KindRPC + 1

// readFields reads an array from rd and calls field with the index of each
// element, rd then positioned at it; field skips the ones it does not know
// (a newer peer's), and missing ones stay zero. It stops at the first
// error, which rd keeps.
func readFields(rd *wire.Reader, field func(i int)) {
	n := rd.ArrayLen()
	for i := 0; i < n && rd.Err() == nil; i++ {
		field(i)
	}
}

// decodeArray decodes b, one msgpack array, with field (see readFields),
// holding in's lock so that field can intern strings, and reports the first
// error or bytes left over. wire.Reader bounds every read, so b needs no
// wire.Check first.
func decodeArray(b []byte, in *interner, field func(i int, rd *wire.Reader)) error {
	rd := wire.NewReader(b)
	in.mu.Lock()
	defer in.mu.Unlock()
	readFields(&rd, func(i int) { field(i, &rd) })
	return rd.Done()
}

// read decodes r from rd, the array EncodeMsgpack writes, with its strings
// interned by in (held; nil: not interned).
func (r *Reg) read(rd *wire.Reader, in *interner) {
	*r = Reg{}
	readFields(rd, func(i int) {
		switch i {
		case 0:
			r.ID = rd.Uint()
		case 1:
			r.Kind = bus.Kind(min(rd.Uint(), 0xff)) // beyond the known kinds: ignored by putLocked
		case 2:
			r.Object = in.str(rd.Bytes())
		case 3:
			r.Cmd = in.str(rd.Bytes())
		case 4:
			r.Mask = rd.Int()
		case 5:
			r.Value = rd.Int()
		case 6:
			r.Slice = rd.Bool()
		case 7:
			r.Weight = rd.Float()
		default:
			rd.Skip()
		}
	})
}

// readRegs reads an array of registrations into buf's storage when it is
// large enough (nil for none or an empty array).
func readRegs(rd *wire.Reader, in *interner, buf []Reg) []Reg {
	k := rd.ArrayLen()
	if k <= 0 {
		return nil
	}
	regs := buf[:0:cap(buf)]
	if k > cap(buf) {
		regs = make([]Reg, 0, k) // k ≤ the bytes left: bounded by the input
	}
	regs = regs[:k]
	for j := range regs {
		regs[j].read(rd, in)
	}
	return regs
}

// decode reads an announcement, as msgpack.Unmarshal into the struct does
// (fields beyond the known ones skipped, missing ones zero), but without
// reflection and with its strings interned: every peer decodes every
// announcement, and msgpack's reflection made decoding a third of a
// peer's handler time per change. Puts reuse buf when it is large enough.
func (a *announcement) decode(b []byte, in *interner, buf []Reg) error {
	*a = announcement{}
	return decodeArray(b, in, func(i int, rd *wire.Reader) {
		switch i {
		case 0:
			a.Type = uint8(min(rd.Uint(), 0xff))
		case 1:
			a.Node = in.str(rd.Bytes())
		case 2:
			a.Ver = rd.Uint()
		case 3:
			a.Puts = readRegs(rd, in, buf)
		case 4:
			if k := rd.ArrayLen(); k > 0 {
				a.Dels = make([]uint64, k)
				for j := range a.Dels {
					a.Dels[j] = rd.Uint()
				}
			}
		case 5:
			a.Target = in.str(rd.Bytes())
		case 6:
			a.Proven = rd.Bool()
		default:
			rd.Skip()
		}
	})
}

// decode reads an acknowledgement without reflection.
func (k *ack) decode(b []byte, in *interner) error {
	*k = ack{}
	return decodeArray(b, in, func(i int, rd *wire.Reader) {
		switch i {
		case 0:
			k.Node = in.str(rd.Bytes())
		case 1:
			k.Ver = rd.Uint()
		default:
			rd.Skip()
		}
	})
}

// decode reads one part of a streamed table without reflection, its
// registrations as announcements' are.
func (tp *tablePart) decode(b []byte, in *interner) error {
	*tp = tablePart{}
	return decodeArray(b, in, func(i int, rd *wire.Reader) {
		switch i {
		case 0:
			tp.Node = in.str(rd.Bytes())
		case 1:
			tp.Ver = rd.Uint()
		case 2:
			tp.Part = int(rd.Int())
		case 3:
			tp.Parts = int(rd.Int())
		case 4:
			tp.Regs = readRegs(rd, in, nil)
		default:
			rd.Skip()
		}
	})
}

// appendAck appends the msgpack encoding of k to b, the form
// msgpack.Marshal gives: acknowledgements are sent by every peer for every
// change.
func appendAck(b []byte, k ack) []byte {
	b = append(b, 0x92)
	b = appendStr(b, k.Node)
	return appendUint(b, k.Ver)
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= 0xff:
		b = append(b, 0xd9, byte(n))
	case n <= 0xffff:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= 0xff:
		return append(b, 0xcc, byte(v))
	case v <= 0xffff:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// regsPool holds the Puts of handled announcements, for the next ones
// (most carry a few registrations; see putsBuf).
var regsPool = sync.Pool{New: func() any { return new([]Reg) }}

// maxPooledPuts bounds the Puts slices kept in regsPool.
const maxPooledPuts = 256

// recyclePuts gives a's Puts back to regsPool unless a was kept.
func recyclePuts(bp *[]Reg, a *announcement) {
	if a.retained || cap(a.Puts) > maxPooledPuts {
		return
	}
	clear(a.Puts) // no strings kept alive by the pool
	*bp = a.Puts[:0]
	regsPool.Put(bp)
}

// maxInterned bounds an interner: past it the interner starts afresh.
const maxInterned = 1 << 14

// interner shares one copy of the strings decoded again and again (node
// names, objects, cmds), so that decoding does not allocate them, and the
// registrations of one node share its name.
type interner struct {
	mu     sync.Mutex
	m      map[string]string
	recent [4]string // the last strings returned: consecutive registrations share their object and cmd
	next   int
}

// str returns b as a string, the same string each time for equal bytes.
// Call with mu held. A nil interner interns nothing.
func (in *interner) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if in == nil {
		return string(b)
	}
	for _, s := range in.recent {
		if s == string(b) {
			return s
		}
	}
	s, ok := in.m[string(b)]
	if !ok {
		s = string(b)
		if len(b) > 2*bus.MaxNameLen {
			return s // not a name we route on; not worth keeping
		}
		if in.m == nil || len(in.m) >= maxInterned {
			in.m = make(map[string]string)
		}
		in.m[s] = s
	}
	in.recent[in.next] = s
	in.next = (in.next + 1) % len(in.recent)
	return s
}
