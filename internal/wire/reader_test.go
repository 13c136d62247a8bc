package wire

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestReaderScalars reads every integer, float, bool and string encoding
// msgpack writes, and compares with what was written.
func TestReaderScalars(t *testing.T) {
	ints := []int64{0, 1, -1, 31, 127, 128, -32, -33, -128, -129, 255, 256, 32767, 32768, -32768, -32769,
		65535, 65536, math.MaxInt32, math.MinInt32, 1 << 32, math.MaxInt64, math.MinInt64}
	for _, v := range ints {
		for _, enc := range []any{v, int8(v), int16(v), int32(v)} {
			data, err := msgpack.Marshal(enc)
			if err != nil {
				t.Fatal(err)
			}
			var want int64
			if err := msgpack.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			rd := NewReader(data)
			if got := rd.Int(); got != want || rd.Done() != nil {
				t.Errorf("Int of %x = %d, %v; want %d", data, got, rd.Err(), want)
			}
		}
		if v >= 0 {
			for _, enc := range []any{uint64(v), uint8(v), uint16(v), uint32(v)} {
				data, _ := msgpack.Marshal(enc)
				var want uint64
				if err := msgpack.Unmarshal(data, &want); err != nil {
					t.Fatal(err)
				}
				rd := NewReader(data)
				if got := rd.Uint(); got != want || rd.Done() != nil {
					t.Errorf("Uint of %x = %d, %v; want %d", data, got, rd.Err(), want)
				}
			}
		}
	}
	data, _ := msgpack.Marshal(uint64(math.MaxUint64))
	if rd := NewReader(data); rd.Uint() != math.MaxUint64 || rd.Done() != nil {
		t.Errorf("Uint of MaxUint64: %v", rd.Err())
	}
	if rd := NewReader(data); rd.Int() != 0 || rd.Err() == nil {
		t.Error("Int of MaxUint64 did not fail")
	}
	neg, _ := msgpack.Marshal(int64(-5))
	if rd := NewReader(neg); rd.Uint() != 0 || rd.Err() == nil {
		t.Error("Uint of -5 did not fail")
	}
	for _, f := range []any{float32(1.5), 2.25, math.MaxFloat64, int64(-3), uint64(7), nil} {
		data, _ := msgpack.Marshal(f)
		var want float64
		if err := msgpack.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		if rd := NewReader(data); rd.Float() != want || rd.Done() != nil {
			t.Errorf("Float of %x: want %v, err %v", data, want, rd.Err())
		}
	}
	for _, s := range []string{"", "a", string(make([]byte, 31)), string(make([]byte, 32)), string(make([]byte, 300)), string(make([]byte, 70000))} {
		for _, enc := range []any{s, []byte(s)} {
			data, _ := msgpack.Marshal(enc)
			if rd := NewReader(data); string(rd.Bytes()) != s || rd.Done() != nil {
				t.Errorf("Bytes of a %d-byte %T: %v", len(s), enc, rd.Err())
			}
		}
	}
	for _, b := range []bool{true, false} {
		data, _ := msgpack.Marshal(b)
		if rd := NewReader(data); rd.Bool() != b || rd.Done() != nil {
			t.Errorf("Bool %v: %v", b, rd.Err())
		}
	}
}

// TestReaderSkip skips values of every kind, nested ones and extensions
// included, and lands on the value after them.
func TestReaderSkip(t *testing.T) {
	var ts msgpack.RawMessage
	ts, _ = msgpack.Marshal(map[string]any{"a": []any{1, "x", nil, 2.5, map[string]int{"b": 3}}, "c": make([]byte, 300)})
	for _, v := range []any{ts, []any{1, 2, []any{3}}, "s", nil, true, 1.5} {
		data, _ := msgpack.Marshal([]any{v, "after"})
		rd := NewReader(data)
		if n := rd.ArrayLen(); n != 2 {
			t.Fatalf("ArrayLen = %d", n)
		}
		rd.Skip()
		if got := string(rd.Bytes()); got != "after" || rd.Done() != nil {
			t.Errorf("after skipping %T: %q, %v", v, got, rd.Err())
		}
	}
}

// TestReaderArbitraryBytes: random and truncated inputs give errors, never
// panics, and an error is sticky.
func TestReaderArbitraryBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		rd := NewReader(b)
		for range 8 {
			switch r.IntN(7) {
			case 0:
				rd.ArrayLen()
			case 1:
				rd.Uint()
			case 2:
				rd.Int()
			case 3:
				rd.Bool()
			case 4:
				rd.Float()
			case 5:
				rd.Bytes()
			default:
				rd.Skip()
			}
		}
		if err := rd.Err(); err != nil {
			if rd.Uint() != 0 || rd.Bytes() != nil || rd.Err() != err {
				t.Fatalf("the error of %x is not sticky", b)
			}
		}
	}
	rd := NewReader([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	if n := rd.ArrayLen(); n != 0 || rd.Err() == nil {
		t.Fatalf("an array header claiming 2^32 elements in 5 bytes: len %d, err %v", n, rd.Err())
	}
}
