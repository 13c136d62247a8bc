package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestFrameRoundTrip parses back every flag byte with extreme slice IDs and
// timeouts: a field is on the wire exactly when its flag is set.
func TestFrameRoundTrip(t *testing.T) {
	u64s := []uint64{0, 1, 127, 128, 300_000, math.MaxUint64}
	bodies := [][]byte{nil, {}, []byte("x"), []byte("\x93\x01\xa1a\xc0")}
	prefix := []byte("keep")
	for flags := range 256 {
		for _, slice := range u64s {
			for _, timeout := range u64s {
				for _, body := range bodies {
					f := Frame{Flags: byte(flags), Slice: slice, Timeout: timeout}
					p := AppendFrame(bytes.Clone(prefix), f, body)
					if !bytes.HasPrefix(p, prefix) {
						t.Fatalf("AppendFrame overwrote dst: %q", p)
					}
					p = p[len(prefix):]
					if n := len(p) - len(body); n > FrameHeaderLen {
						t.Fatalf("%+v: header of %d bytes, FrameHeaderLen is %d", f, n, FrameHeaderLen)
					}
					want := Frame{Flags: byte(flags)}
					if want.Flags&FlagSlice != 0 {
						want.Slice = slice
					}
					if want.Flags&FlagTimeout != 0 {
						want.Timeout = timeout
					}
					got, gotBody, err := ParseFrame(p)
					if err != nil || got != want || !bytes.Equal(gotBody, body) {
						t.Fatalf("ParseFrame(AppendFrame(%+v, %q)) = %+v, %q, %v; want %+v, %q, nil",
							f, body, got, gotBody, err, want, body)
					}
					if len(body) > 0 && &gotBody[0] != &p[len(p)-len(body)] {
						t.Fatalf("%+v: body does not share memory with the frame", f)
					}
				}
			}
		}
	}
}

func TestParseFrameEmptyBody(t *testing.T) {
	tests := []struct {
		p    []byte
		want Frame
	}{
		{[]byte{0}, Frame{}},
		{[]byte{FlagFull}, Frame{Flags: FlagFull}},
		{[]byte{FlagJSON | FlagForwarded}, Frame{Flags: FlagJSON | FlagForwarded}},
		{[]byte{FlagSlice, 0}, Frame{Flags: FlagSlice}},
		{[]byte{FlagSlice, 5}, Frame{Flags: FlagSlice, Slice: 5}},
		{[]byte{FlagTimeout, 0x80, 0x01}, Frame{Flags: FlagTimeout, Timeout: 128}},
		{[]byte{FlagSlice | FlagTimeout, 3, 4}, Frame{Flags: FlagSlice | FlagTimeout, Slice: 3, Timeout: 4}},
	}
	for _, tt := range tests {
		got, body, err := ParseFrame(tt.p)
		if err != nil || got != tt.want || len(body) != 0 {
			t.Errorf("ParseFrame(%x) = %+v, %q, %v; want %+v, empty body, nil", tt.p, got, body, err, tt.want)
		}
	}
}

func TestParseFrameMalformed(t *testing.T) {
	overflow := append(bytes.Repeat([]byte{0xff}, binary.MaxVarintLen64-1), 0x02) // > MaxUint64
	tooLong := bytes.Repeat([]byte{0x80}, binary.MaxVarintLen64+1)
	tests := []struct {
		why string
		p   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"slice ID missing", []byte{FlagSlice}},
		{"slice ID truncated", []byte{FlagSlice, 0x80}},
		{"slice ID overflows", append([]byte{FlagSlice}, overflow...)},
		{"slice ID too long", append([]byte{FlagSlice}, tooLong...)},
		{"timeout missing", []byte{FlagTimeout}},
		{"timeout truncated", []byte{FlagTimeout, 0xff, 0xff}},
		{"timeout overflows", append([]byte{FlagTimeout}, overflow...)},
		{"timeout missing after slice ID", []byte{FlagSlice | FlagTimeout, 1}},
		{"timeout truncated after slice ID", []byte{FlagSlice | FlagTimeout, 1, 0x80}},
	}
	for _, tt := range tests {
		if f, body, err := ParseFrame(tt.p); !errors.Is(err, ErrBadFrame) || body != nil {
			t.Errorf("%s: ParseFrame(%x) = %+v, %q, %v; want ErrBadFrame", tt.why, tt.p, f, body, err)
		}
	}
}

// TestParseFrameTruncated cuts a full header at every byte.
func TestParseFrameTruncated(t *testing.T) {
	for _, f := range []Frame{
		{Flags: FlagSlice, Slice: math.MaxUint64},
		{Flags: FlagTimeout, Timeout: 1 << 40},
		{Flags: FlagSlice | FlagTimeout | FlagFull, Slice: 1 << 20, Timeout: math.MaxUint64},
	} {
		p := AppendFrame(nil, f, nil)
		for n := range len(p) {
			if _, _, err := ParseFrame(p[:n]); !errors.Is(err, ErrBadFrame) {
				t.Errorf("ParseFrame of %d of the %d header bytes of %+v: err = %v, want ErrBadFrame", n, len(p), f, err)
			}
		}
		if got, _, err := ParseFrame(p); err != nil || got != f {
			t.Errorf("ParseFrame(whole header of %+v) = %+v, %v", f, got, err)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	bodies := [][]byte{nil, {}, []byte("x"), []byte("\x92\x01\xa3err")}
	for _, total := range []int{0, 1, 127, 128, 1000, 1 << 20} {
		for _, kind := range []byte{ReplyNone, ReplyValue, ReplyError, ReplyGone, 0xff} {
			for _, body := range bodies {
				p := AppendReply([]byte("keep"), total, kind, body)
				if !bytes.HasPrefix(p, []byte("keep")) {
					t.Fatalf("AppendReply overwrote dst: %q", p)
				}
				gotTotal, gotKind, gotBody, err := ParseReply(p[4:])
				if err != nil || gotTotal != total || gotKind != kind || !bytes.Equal(gotBody, body) {
					t.Errorf("ParseReply(AppendReply(%d, %d, %q)) = %d, %d, %q, %v", total, kind, body, gotTotal, gotKind, gotBody, err)
				}
			}
		}
	}
}

func TestParseReplyMalformed(t *testing.T) {
	tests := []struct {
		why string
		p   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"total truncated", []byte{0x80}},
		{"kind missing", []byte{1}},
		{"kind missing after long total", []byte{0x80, 0x01}},
		{"total overflows", append(bytes.Repeat([]byte{0xff}, binary.MaxVarintLen64-1), 0x02, ReplyValue)},
		{"total above 1<<20", AppendReply(nil, 1<<20+1, ReplyValue, nil)},
		{"negative total", AppendReply(nil, -1, ReplyValue, []byte("x"))},
	}
	for _, tt := range tests {
		if total, kind, body, err := ParseReply(tt.p); !errors.Is(err, ErrBadFrame) || total != 0 || kind != 0 || body != nil {
			t.Errorf("%s: ParseReply(%x) = %d, %d, %q, %v; want ErrBadFrame", tt.why, tt.p, total, kind, body, err)
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(AppendFrame(nil, Frame{Flags: FlagFull}, []byte("body")))
	f.Add(AppendFrame(nil, Frame{Flags: FlagSlice | FlagTimeout, Slice: math.MaxUint64, Timeout: 1234}, []byte("\x91\x01")))
	f.Add(AppendFrame(nil, Frame{Flags: 0xff, Slice: 1, Timeout: 1 << 40}, nil))
	f.Add([]byte{FlagSlice, 0x80, 0x00, 'x'}) // non-minimal varint
	f.Add([]byte{FlagTimeout, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		fr, body, err := ParseFrame(p)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("ParseFrame(%x): error %v does not wrap ErrBadFrame", p, err)
			}
			return
		}
		if fr.Flags != p[0] {
			t.Fatalf("ParseFrame(%x): flags %#x", p, fr.Flags)
		}
		if (fr.Flags&FlagSlice == 0 && fr.Slice != 0) || (fr.Flags&FlagTimeout == 0 && fr.Timeout != 0) {
			t.Fatalf("ParseFrame(%x) = %+v: a field without its flag", p, fr)
		}
		if !bytes.HasSuffix(p, body) || (len(body) > 0 && &body[len(body)-1] != &p[len(p)-1]) {
			t.Fatalf("ParseFrame(%x): body %x is not the tail of the frame", p, body)
		}
		q := AppendFrame(nil, fr, body)
		if len(q) > len(p) {
			t.Fatalf("re-encoding %x gave the longer %x", p, q)
		}
		fr2, body2, err := ParseFrame(q)
		if err != nil || fr2 != fr || !bytes.Equal(body2, body) {
			t.Fatalf("round trip of %x: %+v %x -> %x -> %+v %x %v", p, fr, body, q, fr2, body2, err)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendReply(nil, 3, ReplyValue, []byte("\xc0")))
	f.Add(AppendReply(nil, 1<<20, ReplyGone, nil))
	f.Add([]byte{0x80, 0x80, 0x40, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		total, kind, body, err := ParseReply(p)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("ParseReply(%x): error %v does not wrap ErrBadFrame", p, err)
			}
			return
		}
		if total < 0 || total > 1<<20 || !bytes.HasSuffix(p, body) {
			t.Fatalf("ParseReply(%x) = %d, %d, %x", p, total, kind, body)
		}
		total2, kind2, body2, err := ParseReply(AppendReply(nil, total, kind, body))
		if err != nil || total2 != total || kind2 != kind || !bytes.Equal(body2, body) {
			t.Fatalf("round trip of %x: %d %d %x %v", p, total2, kind2, body2, err)
		}
	})
}

func TestIsNoResponders(t *testing.T) {
	status := func(code string) nats.Header { return nats.Header{"Status": []string{code}} }
	tests := []struct {
		why  string
		m    *nats.Msg
		want bool
	}{
		{"503 without data", &nats.Msg{Header: status("503")}, true},
		{"503 with data", &nats.Msg{Header: status("503"), Data: []byte("x")}, false},
		{"408", &nats.Msg{Header: status("408")}, false},
		{"no header", &nats.Msg{}, false},
		{"plain reply", &nats.Msg{Data: []byte("x")}, false},
	}
	for _, tt := range tests {
		if got := IsNoResponders(tt.m); got != tt.want {
			t.Errorf("%s: IsNoResponders = %v, want %v", tt.why, got, tt.want)
		}
	}
}
