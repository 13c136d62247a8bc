package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxDepth is the deepest nesting of arrays and maps Check accepts, the
// limit encoding/json applies too.
const MaxDepth = 10000

// ErrMalformed is wrapped by every error Check returns.
var ErrMalformed = errors.New("malformed msgpack")

// Check reports whether b holds exactly one well-formed msgpack value whose
// every length fits in b. It allocates only for nesting deeper than 64.
func Check(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty input", ErrMalformed)
	}
	// open[i] is how many values container level i still expects; the
	// outermost level expects the one value.
	var stack [64]int
	open := append(stack[:0], 1)
	pos := 0
	for len(open) > 0 {
		top := len(open) - 1
		if open[top] == 0 {
			open = open[:top]
			continue
		}
		open[top]--
		if pos >= len(b) {
			return fmt.Errorf("%w: truncated at byte %d", ErrMalformed, pos)
		}
		c := b[pos]
		pos++
		var skip, elems uint64 // payload bytes to skip; elements that follow
		container := false
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			elems, container = 2*uint64(c&0x0f), true
		case c <= 0x9f:
			elems, container = uint64(c&0x0f), true
		case c <= 0xbf:
			skip = uint64(c & 0x1f)
		default:
			n, size, ext, isContainer, isMap, ok := header(c)
			if !ok {
				return fmt.Errorf("%w: invalid type byte 0x%02x at byte %d", ErrMalformed, c, pos-1)
			}
			if n > 0 {
				if len(b)-pos < n {
					return fmt.Errorf("%w: truncated length at byte %d", ErrMalformed, pos)
				}
				size = readUint(b[pos : pos+n])
				pos += n
			}
			switch {
			case isContainer && isMap:
				elems, container = 2*size, true
			case isContainer:
				elems, container = size, true
			default:
				skip = size + ext
			}
		}
		rest := uint64(len(b) - pos)
		if skip > rest {
			return fmt.Errorf("%w: a value at byte %d claims %d bytes, %d remain", ErrMalformed, pos, skip, rest)
		}
		pos += int(skip)
		if !container || elems == 0 {
			continue
		}
		// Every element takes at least one byte.
		if elems > rest {
			return fmt.Errorf("%w: a container at byte %d claims %d elements, %d bytes remain", ErrMalformed, pos, elems, rest)
		}
		if len(open) > MaxDepth {
			return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, MaxDepth)
		}
		open = append(open, int(elems))
	}
	if pos != len(b) {
		return fmt.Errorf("%w: %d bytes after the value", ErrMalformed, len(b)-pos)
	}
	return nil
}

// header describes the type bytes 0xc0-0xdf that carry a length or a fixed
// size: n bytes of big-endian length follow (or size is fixed), ext counts
// the extension type byte, and isContainer/isMap say what the length counts.
func header(c byte) (n int, size, ext uint64, isContainer, isMap, ok bool) {
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		return 1, 0, 0, false, false, true
	case 0xc5, 0xda: // bin16, str16
		return 2, 0, 0, false, false, true
	case 0xc6, 0xdb: // bin32, str32
		return 4, 0, 0, false, false, true
	case 0xc7: // ext8
		return 1, 0, 1, false, false, true
	case 0xc8: // ext16
		return 2, 0, 1, false, false, true
	case 0xc9: // ext32
		return 4, 0, 1, false, false, true
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return 0, 4, 0, false, false, true
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return 0, 8, 0, false, false, true
	case 0xcc, 0xd0: // uint8, int8
		return 0, 1, 0, false, false, true
	case 0xcd, 0xd1: // uint16, int16
		return 0, 2, 0, false, false, true
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return 0, 1 << (c - 0xd4), 1, false, false, true
	case 0xdc:
		return 2, 0, 0, true, false, true
	case 0xdd:
		return 4, 0, 0, true, false, true
	case 0xde:
		return 2, 0, 0, true, true, true
	case 0xdf:
		return 4, 0, 0, true, true, true
	}
	return 0, 0, 0, false, false, false // 0xc1 is never used
}

func readUint(p []byte) uint64 {
	switch len(p) {
	case 1:
		return uint64(p[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(p))
	default:
		return uint64(binary.BigEndian.Uint32(p))
	}
}

// Unmarshal checks b with Check, then decodes it into v with msgpack.
func Unmarshal(b []byte, v any) error {
	if err := Check(b); err != nil {
		return err
	}
	return msgpack.Unmarshal(b, v)
}
