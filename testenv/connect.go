package testenv

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// Connect connects to url with opts and closes the connection when t ends.
// It fails t with t.Fatal if the connection fails.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("testenv: connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
