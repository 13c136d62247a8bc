package directory

import (
	"testing"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/testenv"
)

// TestHostileHeaders: msgpack headers claiming about 2³² elements or bytes
// (array, map, str, bin, ext, nested), published in this test process on
// every directory subject family, are refused and counted without
// allocating what they claim; the directory keeps working.
func TestHostileHeaders(t *testing.T) {
	s := startServer(t)
	n1 := join(t, testenv.Connect(t, s.URL()), "n1")
	n2 := join(t, testenv.Connect(t, s.URL()), "n2")
	raw := testenv.Connect(t, s.URL())
	hostile := [][]byte{
		{0xdd, 0xff, 0xff, 0xff, 0xff},                                   // array 32
		{0xdf, 0xff, 0xff, 0xff, 0xff},                                   // map 32
		{0xdb, 0xff, 0xff, 0xff, 0xff},                                   // str 32
		{0xc6, 0xff, 0xff, 0xff, 0xff},                                   // bin 32
		{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01},                             // ext 32
		{0x96, 0x01, 0xa2, 'n', '9', 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff}, // an announcement whose Puts claims 4G
		{0x91, 0x91, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff},                 // nested
	}
	var perNode uint64 // messages each of n1 and n2 must count
	for _, h := range hostile {
		for _, subj := range []string{testSubjects.Ann("n9"), testSubjects.Ann("n1")} {
			if err := raw.Publish(subj, h); err != nil {
				t.Fatal(err)
			}
			perNode++ // both nodes hear every announcement
		}
		for _, node := range []string{"n1", "n2"} {
			if err := raw.Publish(testSubjects.NodeAck(node), h); err != nil {
				t.Fatal(err)
			}
			if err := raw.PublishRequest(testSubjects.NodeProbe(node), raw.NewInbox(), h); err != nil {
				t.Fatal(err)
			}
		}
		perNode += 2 // its ack and its probe
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Directory{n1, n2} {
		eventually(t, waitTimeout, func() bool { return d.Stats().Undecodable == perNode }, "%s counts %d hostile messages", d.Node(), perNode)
	}
	announce(t, n1, []Reg{reg(1)}, nil)
	if got := ids(n2, bus.KindPub, "n1"); len(got) != 1 {
		t.Fatalf("after the hostile messages n2 knows n1's %v", got)
	}
}
