package directory

import (
	"context"
	"runtime"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/testenv"
)

// FuzzDirectoryMessage feeds arbitrary bytes to every handler of directory
// messages (announcements, acks, probes, table requests and parts, member
// lists) of a live node: none may panic, decoding may cost memory only in
// proportion to the input, and the node's own table never changes.
func FuzzDirectoryMessage(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {0xc0}, {0x90}, {0xdd, 0xff, 0xff, 0xff, 0xff}, {0xdf, 0xff, 0xff, 0xff, 0xff},
		{0xc6, 0xff, 0xff, 0xff, 0xff}, {0x96, 0x01, 0xa2, 'n', '9', 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff},
		{0x91, 0x91, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	s := testenv.Run(f)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	d, err := Join(ctx, Options{Conn: testenv.Connect(f, s.URL()), Subjects: testSubjects, Node: "n1", Heartbeat: testHeartbeat, Timeout: testTimeout})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(d.Close)
	if err := d.Announce([]Reg{reg(1), reg(2)}, nil).Wait(waitTimeout); err != nil {
		f.Fatal(err)
	}
	ownLen := func() int { d.mu.RLock(); defer d.mu.RUnlock(); return len(d.self.m) }
	inbox := d.inbox + ".zz"
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, m := range []*nats.Msg{
			{Subject: testSubjects.Ann("n9"), Data: data},
			{Subject: testSubjects.Ann("n1"), Data: data},
			{Subject: testSubjects.NodeAck("n1"), Data: data},
			{Subject: testSubjects.NodeProbe("n1"), Data: data},
			{Subject: testSubjects.NodeDir("n1"), Data: data},
			{Subject: testSubjects.Members(), Data: data},
			{Subject: inbox, Data: data},
		} {
			switch m.Subject {
			case testSubjects.Ann("n9"), testSubjects.Ann("n1"):
				d.onAnnouncement(m)
			case testSubjects.NodeAck("n1"):
				d.onAck(m)
			case testSubjects.NodeProbe("n1"):
				d.onProbe(m)
			case testSubjects.NodeDir("n1"):
				d.onTableRequest(m)
			case testSubjects.Members():
				d.onMembers(m)
			default:
				d.onFetchReply(m)
			}
		}
		runtime.ReadMemStats(&after)
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(512*len(data)+8<<20); got > limit {
			t.Fatalf("%d input bytes allocated %d bytes", len(data), got)
		}
		if n := ownLen(); n != 2 {
			t.Fatalf("the node's own table holds %d registrations after hostile input, want 2", n)
		}
	})
}
