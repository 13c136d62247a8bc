package notifier_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// After the server a Notifier is connected to goes away for good, it fails
// over to another cluster member (learned from the cluster) and its
// registrations, and its publishes and RPCs, work again with no user action.
func TestFailoverToAnotherClusterMember(t *testing.T) {
	c := testenv.RunCluster(t, 3)
	opts := []notifier.Option{fastReconnect, notifier.WithHeartbeat(fastHeartbeat)}
	a := connect(t, c[0].URL(), opts...) // knows only c[0]'s URL
	b := connect(t, c[1].URL(), opts...)
	ra, rb := &recorder{}, &recorder{}
	if err := a.Subscribe("fo", notifier.Exact(1), "c", ra); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe("fo", notifier.Exact(2), "c", rb); err != nil {
		t.Fatal(err)
	}
	if err := b.RPCRegister("fo", notifier.Match{}, "q", rpcConst("b")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(a.Conn().DiscoveredServers()) >= 2 },
		"a learns the other cluster members")

	c[0].Shutdown()

	probe := int64(0)
	ok := poll(20*time.Second, func() bool {
		probe++
		_ = a.Publish("fo", 2, "c", probe)
		_ = b.Publish("fo", 1, "c", probe)
		return rb.Len() > 0 && ra.Len() > 0
	})
	if !ok {
		t.Fatalf("20s after its server went away, a's traffic does not flow (to b: %d, from b: %d)", rb.Len(), ra.Len())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := a.RPC(ctx, "fo", 3, "q", nil)
	if err != nil || len(res) != 1 {
		t.Fatalf("RPC after failover: %v, %v", res, err)
	}
	// A registration made after the failover is confirmed by the peer.
	r2 := &recorder{}
	if err := a.Subscribe("fo", notifier.Exact(4), "c", r2); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("fo", 4, "c", nil); err != nil {
		t.Fatal(err)
	}
	r2.waitLen(t, 1, deliveryTimeout)
}
