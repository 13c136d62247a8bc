package directory

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/route"
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
// tag describes; written out because every peer decodes every Reg of every
// announcement, and reflection made that the directory's main cost.
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

// DecodeMsgpack reads what EncodeMsgpack writes. Fields beyond the eight
// known (a newer peer's) are skipped; missing ones stay zero.
func (r *Reg) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	*r = Reg{}
	for i := range max(n, 0) {
		var err error
		switch i {
		case 0:
			r.ID, err = d.DecodeUint64()
		case 1:
			var k uint8
			k, err = d.DecodeUint8()
			r.Kind = bus.Kind(k)
		case 2:
			r.Object, err = d.DecodeString()
		case 3:
			r.Cmd, err = d.DecodeString()
		case 4:
			r.Mask, err = d.DecodeInt64()
		case 5:
			r.Value, err = d.DecodeInt64()
		case 6:
			r.Slice, err = d.DecodeBool()
		case 7:
			r.Weight, err = d.DecodeFloat64()
		default:
			err = d.Skip()
		}
		if err != nil {
			return fmt.Errorf("registration field %d: %w", i, err)
		}
	}
	return nil
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
