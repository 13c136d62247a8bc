package main

import (
	"reflect"
	"testing"

	"github.com/natsnotifier/notifier/internal/redact"
)

func TestInt64Flag(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"-5", -5, true},
		{"0x10", 16, true},
		{"0xffffffffffffffff", -1, true},
		{"0x8000000000000000", -1 << 63, true},
		{"9223372036854775807", 1<<63 - 1, true},
		{"", 0, false},
		{"x", 0, false},
		{"1.5", 0, false},
		{"0x1ffffffffffffffff", 0, false},
	}
	for _, tt := range tests {
		var f int64Flag
		err := f.Set(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (f.v != tt.want || !f.set)) {
			t.Errorf("Set(%q) = %v, %d, set %v; want %d, ok %v", tt.in, err, f.v, f.set, tt.want, tt.ok)
		}
	}
}

func TestParseJSONArgs(t *testing.T) {
	tests := []struct {
		in   string
		want any
		ok   bool
	}{
		{"", nil, true},
		{"  ", nil, true},
		{"null", nil, true},
		{`"hi"`, "hi", true},
		{"3", int64(3), true},
		{"-3", int64(-3), true},
		{"2.5", 2.5, true},
		{"18446744073709551615", uint64(18446744073709551615), true},
		{`{"a":[1,2.5,"x",true]}`, map[string]any{"a": []any{int64(1), 2.5, "x", true}}, true},
		{"{", nil, false},
		{"1 2", nil, false},
		{"hi", nil, false},
	}
	for _, tt := range tests {
		got, err := parseJSONArgs(tt.in)
		if (err == nil) != tt.ok || (tt.ok && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("parseJSONArgs(%q) = %#v, %v; want %#v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:secret@h:4222,nats://h2:4222", "nats://u:xxxxx@h:4222,nats://h2:4222"},
		{"nats://token@h:4222", "nats://xxxxx@h:4222"},
	}
	for _, tt := range tests {
		if got := redact.URLs(tt.in); got != tt.want {
			t.Errorf("redact.URLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
