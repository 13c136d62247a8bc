package bus

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultPrefix is the first subject token(s) of every subject the Notifier uses.
const DefaultPrefix = "notifier"

// MaxNameLen is the longest object or cmd name accepted, in bytes.
const MaxNameLen = 128

// ValidName reports whether s can be used as an object or cmd: non-empty, at
// most MaxNameLen bytes, and a single NATS subject token (no '.', '*', '>',
// whitespace or control characters).
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return validUnicode(s[i:])
		}
		if c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// validUnicode is ValidName's slow path for non-ASCII names: valid UTF-8
// without Unicode white space or control characters.
func validUnicode(s string) bool {
	for _, r := range s {
		switch {
		case r == utf8.RuneError, unicode.IsSpace(r), unicode.IsControl(r):
			return false
		case r < utf8.RuneSelf && (r == '.' || r == '*' || r == '>'):
			return false
		}
	}
	return true
}

// ValidPrefix reports whether p is a usable subject prefix: one or more valid
// names joined by '.'.
func ValidPrefix(p string) bool {
	if p == "" {
		return false
	}
	for _, tok := range strings.Split(p, ".") {
		if !ValidName(tok) {
			return false
		}
	}
	return true
}

// Subjects builds and parses the subjects under one prefix.
type Subjects struct {
	Prefix string
}

// Ann is the subject a node announces on.
func (s Subjects) Ann(node string) string { return s.Prefix + ".dir.ann." + node }

// AnnAll matches every node's announcements.
func (s Subjects) AnnAll() string { return s.Prefix + ".dir.ann.*" }

// Members is the queue-group subject answering with the member list. It lies
// outside "<prefix>.>" so that a `nats sub '<prefix>.>'` watcher, which
// receives requests without answering them, cannot hide the "no responders"
// answer that tells a joining node the bus is empty.
func (s Subjects) Members() string { return "_NOTIFIER." + s.Prefix + ".members" }

// NodeDir is the subject a node serves its table on.
func (s Subjects) NodeDir(node string) string { return s.Prefix + ".node." + node + ".dir" }

// NodeProbe is the subject a node answers ring probes on.
func (s Subjects) NodeProbe(node string) string { return s.Prefix + ".node." + node + ".probe" }

// NodeAck is the subject a node receives acknowledgements on.
func (s Subjects) NodeAck(node string) string { return s.Prefix + ".node." + node + ".ack" }

// NodeRegistrations is the discovery endpoint of node: a request answered
// with its registrations as JSON (a nats micro endpoint).
func (s Subjects) NodeRegistrations(node string) string {
	return s.Prefix + ".node." + node + ".registrations"
}

// NodeData is the prefix, ending in '.', of the routed data subjects of a
// node for kind: "<prefix>.node.<node>.pub." or "<prefix>.node.<node>.rpc.".
func (s Subjects) NodeData(node string, k Kind) string {
	return s.Prefix + ".node." + node + "." + k.String() + "."
}

// AppendNodeData appends the subject of a message routed to node for kind,
// "<prefix>.node.<node>.<kind>.<object>.<cmd>.<id>", to dst without
// allocating: the send path's form of NodeData and AppendAddr.
func (s Subjects) AppendNodeData(dst []byte, node string, k Kind, object, cmd string, id int64) []byte {
	dst = append(dst, s.Prefix...)
	dst = append(dst, ".node."...)
	dst = append(dst, node...)
	dst = append(dst, '.')
	dst = append(dst, k.String()...)
	dst = append(dst, '.')
	return AppendAddr(dst, object, cmd, id)
}

// AppendFan appends the fan-out subject "<prefix>.fan.<object>.<cmd>.<id>"
// to dst without allocating.
func (s Subjects) AppendFan(dst []byte, object, cmd string, id int64) []byte {
	dst = append(dst, s.Prefix...)
	dst = append(dst, ".fan."...)
	return AppendAddr(dst, object, cmd, id)
}

// AnnNode returns the node an announcement subject (Ann) names.
func (s Subjects) AnnNode(subject string) (node string, ok bool) {
	node, ok = strings.CutPrefix(subject, s.Prefix+".dir.ann.")
	if !ok || node == "" || strings.Contains(node, ".") {
		return "", false
	}
	return node, true
}

// Fan is the prefix, ending in '.', of the fan-out subjects
// "<prefix>.fan.<object>.<cmd>.<id>" that reach every full registration for
// all ids of an (object, cmd).
func (s Subjects) Fan() string { return s.Prefix + ".fan." }

// Gateway is the prefix, ending in '.', of the gateway subjects for kind:
// "<prefix>.pub." or "<prefix>.rpc.".
func (s Subjects) Gateway(k Kind) string { return s.Prefix + "." + k.String() + "." }

// GatewayQueue is the queue group the Notifiers' gateway subscriptions share,
// so one Notifier takes each gateway message.
func (s Subjects) GatewayQueue() string { return s.Prefix + ".gateway" }

// AppendAddr appends "<object>.<cmd>.<id>" to dst.
func AppendAddr(dst []byte, object, cmd string, id int64) []byte {
	dst = append(dst, object...)
	dst = append(dst, '.')
	dst = append(dst, cmd...)
	dst = append(dst, '.')
	return strconv.AppendInt(dst, id, 10)
}

// ParseAddr parses "<object>.<cmd>.<id>", the tail of a data or gateway
// subject. The returned strings share memory with s.
func ParseAddr(s string) (object, cmd string, id int64, ok bool) {
	i := strings.IndexByte(s, '.')
	if i <= 0 {
		return "", "", 0, false
	}
	object, s = s[:i], s[i+1:]
	i = strings.IndexByte(s, '.')
	if i <= 0 {
		return "", "", 0, false
	}
	cmd, s = s[:i], s[i+1:]
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || !ValidName(object) || !ValidName(cmd) {
		return "", "", 0, false
	}
	return object, cmd, id, true
}

// Kind separates notification registrations from RPC registrations.
type Kind uint8

const (
	KindPub Kind = iota // Subscribe and Slice registrations
	KindRPC             // RPCRegister and RPCSlice registrations
)

func (k Kind) String() string {
	if k == KindRPC {
		return "rpc"
	}
	return "pub"
}
