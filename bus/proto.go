package bus

import (
	"encoding/binary"
	"errors"

	"github.com/natsnotifier/notifier/match"
)

// Kind separates notification registrations from RPC registrations.
type Kind uint8

const (
	KindPub Kind = iota // Subscribe and Slice registrations
	KindRPC             // RPCRegister and RPCSlice registrations
	numKinds
)

func (k Kind) String() string {
	if k == KindRPC {
		return "rpc"
	}
	return "pub"
}

// Reg is one registration as the directory knows it. ID is unique within the
// node that owns it.
type Reg struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       uint64
	Kind     Kind
	Object   string
	Cmd      string
	Mask     int64
	Value    int64
	Slice    bool
	Weight   float64
}

// RegRef names one registration on the bus.
type RegRef struct {
	Node string
	ID   uint64
}

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

// announcement is published on Subjects.Ann by its node.
type announcement struct {
	_msgpack struct{} `msgpack:",as_array"`
	Type     uint8
	Node     string
	Ver      uint64
	Puts     []Reg
	Dels     []uint64
	Target   string // annDrop: the node found gone
}

// ack confirms that Node has applied the announcer's table up to Ver.
type ack struct {
	_msgpack struct{} `msgpack:",as_array"`
	Node     string
	Ver      uint64
}

// probe is the request of a ring probe, sent to Subjects.NodeProbe of a
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

// memberList answers Subjects.Members.
type memberList struct {
	_msgpack struct{} `msgpack:",as_array"`
	Nodes    []string
}

// Frame flags, the first byte of a routed data message.
const (
	FlagFull      byte = 1 << iota // deliver to the node's matching full registrations, but those for all ids
	FlagSlice                      // deliver to the slice registration whose ID follows
	FlagJSON                       // the body is JSON, not msgpack
	FlagForwarded                  // re-routed once already; never re-route again
	FlagTimeout                    // an RPC: the caller's remaining milliseconds follow
	FlagBroadcast                  // deliver to every matching full registration for all ids (Match{}): the fan-out subject
)

// ErrBadFrame reports a routed message that cannot be parsed.
var ErrBadFrame = errors.New("notifier: malformed frame")

// Frame is the header of a routed message.
type Frame struct {
	Flags   byte
	Slice   uint64 // with FlagSlice: the slice registration's ID
	Timeout uint64 // with FlagTimeout: milliseconds the caller still waits
}

// AppendFrame appends a routed message: flags, the slice registration ID when
// FlagSlice is set, the timeout when FlagTimeout is set, then the body.
func AppendFrame(dst []byte, f Frame, body []byte) []byte {
	dst = append(dst, f.Flags)
	if f.Flags&FlagSlice != 0 {
		dst = binary.AppendUvarint(dst, f.Slice)
	}
	if f.Flags&FlagTimeout != 0 {
		dst = binary.AppendUvarint(dst, f.Timeout)
	}
	return append(dst, body...)
}

// FrameHeaderLen is an upper bound of the bytes AppendFrame adds to a body.
const FrameHeaderLen = 1 + 2*binary.MaxVarintLen64

// ParseFrame splits a routed message into its parts; body shares memory with p.
func ParseFrame(p []byte) (f Frame, body []byte, err error) {
	if len(p) == 0 {
		return f, nil, ErrBadFrame
	}
	f.Flags, p = p[0], p[1:]
	if f.Flags&FlagSlice != 0 {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return f, nil, ErrBadFrame
		}
		f.Slice, p = v, p[n:]
	}
	if f.Flags&FlagTimeout != 0 {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return f, nil, ErrBadFrame
		}
		f.Timeout, p = v, p[n:]
	}
	return f, p, nil
}

// Reply kinds, in a routed RPC reply.
const (
	ReplyNone    byte = iota // the handler had nothing to say (nil, nil) or nothing matched
	ReplyValue               // the body is the msgpack-encoded return value
	ReplyError               // the body is a msgpack-encoded RemoteError (code, message)
	ReplyGone                // the requested slice registration is no longer here
	ReplyNothing             // no registration here matches any more
)

// AppendReply appends one routed RPC reply: the number of replies the node
// sends for this request in all, the kind, then the body.
func AppendReply(dst []byte, total int, kind byte, body []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(total))
	dst = append(dst, kind)
	return append(dst, body...)
}

// ParseReply is the inverse of AppendReply.
func ParseReply(p []byte) (total int, kind byte, body []byte, err error) {
	v, n := binary.Uvarint(p)
	if n <= 0 || len(p) < n+1 || v > 1<<20 {
		return 0, 0, nil, ErrBadFrame
	}
	return int(v), p[n], p[n+1:], nil
}
