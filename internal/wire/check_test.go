package wire

import (
	"errors"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"nil", []byte{0xc0}, true},
		{"fixint", []byte{0x05}, true},
		{"negative fixint", []byte{0xff}, true},
		{"fixstr", []byte{0xa2, 'h', 'i'}, true},
		{"fixarray", []byte{0x92, 0x01, 0x02}, true},
		{"fixmap", []byte{0x81, 0xa1, 'k', 0x01}, true},
		{"nested", []byte{0x91, 0x91, 0x91, 0xc0}, true},
		{"float64", []byte{0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, true},
		{"fixext4", []byte{0xd6, 0xff, 0, 0, 0, 0}, true},
		{"ext8", []byte{0xc7, 0x02, 0x01, 0xaa, 0xbb}, true},
		{"empty array16", []byte{0xdc, 0, 0}, true},
		{"empty", nil, false},
		{"never-used byte", []byte{0xc1}, false},
		{"trailing bytes", []byte{0xa1, 'x', 0x22}, false},
		{"two values", []byte{0x01, 0x02}, false},
		{"truncated str", []byte{0xa3, 'a'}, false},
		{"truncated float", []byte{0xcb, 0, 0}, false},
		{"truncated length", []byte{0xdd, 0xff}, false},
		{"array32 claims 2^32-1", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, false},
		{"map32 claims 2^32-1", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01}, false},
		{"str32 claims 2^32-1", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, false},
		{"bin32 claims 2^32-1", []byte{0xc6, 0xff, 0xff, 0xff, 0xff, 0}, false},
		{"ext32 claims 2^32-1", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, false},
		{"array16 claims more than remain", []byte{0xdc, 0x00, 0x03, 0x01, 0x01}, false},
		{"nested huge", []byte{0x91, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff}, false},
		{"map missing value", []byte{0x81, 0x01}, false},
		{"array missing element", []byte{0x92, 0x01}, false},
	} {
		err := Check(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Check(% x) = %v, want ok=%v", tc.name, tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v does not wrap ErrMalformed", tc.name, err)
		}
	}
}

func TestCheckDepth(t *testing.T) {
	deep := make([]byte, MaxDepth+2)
	for i := range deep[:len(deep)-1] {
		deep[i] = 0x91
	}
	deep[len(deep)-1] = 0xc0
	if err := Check(deep); err == nil {
		t.Fatalf("Check accepted %d levels of nesting", MaxDepth+1)
	}
	ok := deep[len(deep)-MaxDepth+1:]
	if err := Check(ok); err != nil {
		t.Fatalf("Check refused %d levels of nesting: %v", len(ok)-1, err)
	}
}

// TestCheckAcceptsMarshal: everything msgpack itself encodes is accepted.
func TestCheckAcceptsMarshal(t *testing.T) {
	type inner struct {
		A []string
		B map[string]any
	}
	for _, v := range []any{
		nil, true, 1, -1, int64(-1 << 40), uint64(1 << 63), 1.5, float32(2.5), "", "héllo",
		make([]byte, 300), make([]int, 70000), map[string]int{"a": 1, "b": 2},
		inner{A: []string{"x", "y"}, B: map[string]any{"n": nil, "l": []any{1, "2", 3.0}}},
		string(make([]byte, 70000)),
	} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(b); err != nil {
			t.Errorf("Check(Marshal(%T)) = %v", v, err)
		}
	}
}

func TestUnmarshal(t *testing.T) {
	var v any
	if err := Unmarshal([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, &v); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Unmarshal of a hostile header = %v, want ErrMalformed", err)
	}
	if err := Unmarshal([]byte{0x92, 0x01, 0xa1, 'x'}, &v); err != nil {
		t.Fatal(err)
	}
	if l, ok := v.([]any); !ok || len(l) != 2 {
		t.Fatalf("decoded %#v", v)
	}
}

// FuzzCheck: whatever Check accepts decodes into any without a panic, with
// memory proportional to the input; whatever msgpack encodes, Check accepts.
func FuzzCheck(f *testing.F) {
	for _, s := range [][]byte{
		{0xc0}, {0x92, 0x01, 0x02}, {0xdd, 0xff, 0xff, 0xff, 0xff}, {0xdf, 0, 0, 0, 1, 0xa1, 'k', 0x91, 0xc0},
		{0xc7, 0x02, 0x01, 0xaa, 0xbb}, {0xd6, 0xff, 0, 0, 0, 0}, {0xc9, 0, 0, 0, 1, 0x05, 0x00},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b) != nil {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var v any
		_ = msgpack.Unmarshal(b, &v)
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(256*len(b))+1<<20 {
			t.Fatalf("decoding %d accepted bytes allocated %d bytes", len(b), grew)
		}
		again, err := msgpack.Marshal(v)
		if err == nil && Check(again) != nil {
			t.Fatalf("Check refused msgpack's own encoding % x", again)
		}
	})
}
