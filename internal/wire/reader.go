package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Reader decodes a msgpack value one element at a time, without reflection
// and without allocating: the directory's hot messages (every peer decodes
// every announcement) are read with it. It needs no Check first: every
// read is bounded by the input (an array may claim no more elements than
// bytes remain, a string no more bytes), skipped values are walked without
// recursion, and any other bytes yield an error, never a panic. A caller
// that allocates per element (make([]T, ArrayLen())) thus allocates in
// proportion to the input, as after Check.
//
// Errors are sticky: after the first one every read returns the zero value,
// and Err reports it.
type Reader struct {
	b   []byte
	pos int
	err error
}

// NewReader returns a Reader of b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Err returns the first error met, if any.
func (r *Reader) Err() error { return r.err }

// Done reports an error if bytes remain after the values read.
func (r *Reader) Done() error {
	if r.err == nil && r.pos != len(r.b) {
		r.fail("%d bytes after the value", len(r.b)-r.pos)
	}
	return r.err
}

func (r *Reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: at byte %d: %s", ErrMalformed, r.pos, fmt.Sprintf(format, args...))
	}
}

// take returns the next n bytes.
func (r *Reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.pos < n {
		r.fail("truncated")
		return nil
	}
	p := r.b[r.pos : r.pos+n]
	r.pos += n
	return p
}

func (r *Reader) code() (byte, bool) {
	p := r.take(1)
	if p == nil {
		return 0, false
	}
	return p[0], true
}

// length reads an n-byte big-endian length.
func (r *Reader) length(n int) int {
	p := r.take(n)
	if p == nil {
		return 0
	}
	v := readUint(p)
	if v > math.MaxInt32 {
		r.fail("length %d", v)
		return 0
	}
	return int(v)
}

// ArrayLen reads an array header and returns its length; nil reads as -1.
// A length larger than the bytes left (each element takes one at least) is
// an error.
func (r *Reader) ArrayLen() int {
	c, ok := r.code()
	if !ok {
		return 0
	}
	var n int
	switch {
	case c == 0xc0:
		return -1
	case c >= 0x90 && c <= 0x9f:
		n = int(c & 0x0f)
	case c == 0xdc:
		n = r.length(2)
	case c == 0xdd:
		n = r.length(4)
	default:
		r.fail("type byte 0x%02x is not an array", c)
		return 0
	}
	if r.err == nil && n > len(r.b)-r.pos {
		r.fail("an array claims %d elements, %d bytes remain", n, len(r.b)-r.pos)
		return 0
	}
	return n
}

// Uint reads an integer (nil reads as 0). A negative one is an error.
func (r *Reader) Uint() uint64 {
	v, neg := r.integer()
	if neg {
		r.fail("negative integer where an unsigned one is expected")
		return 0
	}
	return v
}

// Int reads an integer (nil reads as 0) as int64; one above MaxInt64 is an error.
func (r *Reader) Int() int64 {
	v, neg := r.integer()
	if !neg && v > math.MaxInt64 {
		r.fail("integer %d overflows int64", v)
		return 0
	}
	return int64(v)
}

// integer reads any msgpack integer: its two's-complement bits, and whether
// it is negative.
func (r *Reader) integer() (uint64, bool) {
	c, ok := r.code()
	if !ok {
		return 0, false
	}
	switch {
	case c <= 0x7f:
		return uint64(c), false
	case c >= 0xe0:
		return uint64(int64(int8(c))), true
	case c == 0xc0:
		return 0, false
	}
	var size int
	switch c {
	case 0xcc, 0xd0:
		size = 1
	case 0xcd, 0xd1:
		size = 2
	case 0xce, 0xd2:
		size = 4
	case 0xcf, 0xd3:
		size = 8
	default:
		r.fail("type byte 0x%02x is not an integer", c)
		return 0, false
	}
	p := r.take(size)
	if p == nil {
		return 0, false
	}
	var u uint64
	switch size {
	case 1:
		u = uint64(p[0])
	case 2:
		u = uint64(binary.BigEndian.Uint16(p))
	case 4:
		u = uint64(binary.BigEndian.Uint32(p))
	default:
		u = binary.BigEndian.Uint64(p)
	}
	if c >= 0xd0 { // signed: sign-extend
		shift := 64 - 8*size
		s := int64(u<<shift) >> shift
		return uint64(s), s < 0
	}
	return u, false
}

// Bool reads a boolean (nil reads as false).
func (r *Reader) Bool() bool {
	c, ok := r.code()
	switch {
	case !ok, c == 0xc0, c == 0xc2:
		return false
	case c == 0xc3:
		return true
	}
	r.fail("type byte 0x%02x is not a boolean", c)
	return false
}

// Float reads a float32, float64 or integer as float64 (nil reads as 0).
func (r *Reader) Float() float64 {
	if r.err != nil || r.pos >= len(r.b) {
		r.take(1)
		return 0
	}
	switch r.b[r.pos] {
	case 0xca:
		r.pos++
		if p := r.take(4); p != nil {
			return float64(math.Float32frombits(binary.BigEndian.Uint32(p)))
		}
		return 0
	case 0xcb:
		r.pos++
		if p := r.take(8); p != nil {
			return math.Float64frombits(binary.BigEndian.Uint64(p))
		}
		return 0
	}
	v, neg := r.integer()
	if neg {
		return float64(int64(v))
	}
	return float64(v)
}

// Bytes reads a string or binary value (nil reads as empty) and returns its
// bytes, which alias the input.
func (r *Reader) Bytes() []byte {
	c, ok := r.code()
	if !ok {
		return nil
	}
	var n int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xc0:
		return nil
	case c == 0xd9, c == 0xc4:
		n = r.length(1)
	case c == 0xda, c == 0xc5:
		n = r.length(2)
	case c == 0xdb, c == 0xc6:
		n = r.length(4)
	default:
		r.fail("type byte 0x%02x is not a string", c)
		return nil
	}
	return r.take(n)
}

// Skip reads one value of any type, containers included, and discards it.
func (r *Reader) Skip() {
	if r.err != nil {
		return
	}
	end, err := skipValue(r.b, r.pos)
	if err != nil {
		r.fail("%v", err)
		return
	}
	r.pos = end
}

// skipValue returns the end of the value that starts at pos.
func skipValue(b []byte, pos int) (int, error) {
	open := 1
	for open > 0 {
		open--
		if pos >= len(b) {
			return 0, fmt.Errorf("truncated")
		}
		c := b[pos]
		pos++
		var skip, elems uint64
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			elems = 2 * uint64(c&0x0f)
		case c <= 0x9f:
			elems = uint64(c & 0x0f)
		case c <= 0xbf:
			skip = uint64(c & 0x1f)
		default:
			n, size, ext, isContainer, isMap, ok := header(c)
			if !ok {
				return 0, fmt.Errorf("invalid type byte 0x%02x", c)
			}
			if n > 0 {
				if len(b)-pos < n {
					return 0, fmt.Errorf("truncated length")
				}
				size = readUint(b[pos : pos+n])
				pos += n
			}
			switch {
			case isContainer && isMap:
				elems = 2 * size
			case isContainer:
				elems = size
			default:
				skip = size + ext
			}
		}
		rest := uint64(len(b) - pos)
		if skip > rest || elems > rest {
			return 0, fmt.Errorf("a value claims more than the %d bytes left", rest)
		}
		pos += int(skip)
		open += int(elems)
	}
	return pos, nil
}
