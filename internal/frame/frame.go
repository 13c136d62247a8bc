// Package frame is the wire format of the Notifier's routed messages and
// RPC replies: a flag byte, the varint fields its flags announce, then the
// msgpack body. It is the library's own: other NATS clients talk to the
// gateway subjects (see package bus) instead.
package frame

import (
	"encoding/binary"
	"errors"

	"github.com/nats-io/nats.go"
)

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

// IsNoResponders reports whether m is the server's "503 no responders" status.
func IsNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
