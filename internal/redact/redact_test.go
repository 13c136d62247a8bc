package redact

import "testing"

func TestURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"", ""},
		{"nats://u:secret@h:4222,nats://h2:4222", "nats://u:xxxxx@h:4222,nats://h2:4222"},
		{"nats://token@h:4222", "nats://xxxxx@h:4222"},
		{"tls://u:p%40ss@h:4222/path?q=a@b", "tls://u:xxxxx@h:4222/path?q=a@b"},
		{"u:pw@h:4222", "u:xxxxx@h:4222"},                  // no scheme
		{"nats://u:pa ss@h:4222", "nats://u:xxxxx@h:4222"}, // does not parse
		{"nats://u:a@b@h:4222", "nats://u:xxxxx@h:4222"},   // '@' in the password
		{" nats://t@h:1 , nats://h:2", " nats://xxxxx@h:1 , nats://h:2"},
	}
	for _, tt := range tests {
		if got := URLs(tt.in); got != tt.want {
			t.Errorf("URLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
