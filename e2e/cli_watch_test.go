package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
)

// dataSubjects are the subjects the README's "only the data traffic"
// command watches.
var dataSubjects = []string{"notifier.pub.>", "notifier.rpc.>", "notifier.fan.>", "notifier.node.*.pub.>", "notifier.node.*.rpc.>"}

// TestCLIWatchDataOnly: the README's command shows gateway, fan-out and
// routed messages and none of the directory's, while heartbeats go by.
func TestCLIWatchDataOnly(t *testing.T) { forEachServer(t, testCLIWatchDataOnly) }

func testCLIWatchDataOnly(t *testing.T, url string) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := "nats sub '" + strings.Join(dataSubjects, "' '") + "'"
	if !strings.Contains(string(readme), cmd) {
		t.Fatalf("README.md does not show the command %s", cmd)
	}
	hb := notifier.WithHeartbeat(50 * time.Millisecond)
	a, err := notifier.Connect(url, hb)
	must(t, err)
	defer a.Close()
	b, err := notifier.Connect(url, hb)
	must(t, err)
	defer b.Close()
	full, routed := &recorder{}, &recorder{}
	must(t, a.Subscribe("watch", notifier.Match{}, "ev", full)) // the fan-out path
	must(t, b.Subscribe("watch", notifier.Exact(3), "ev", routed))
	must(t, b.RPCRegister("watch", notifier.Match{}, "echo", &echoResponder{name: "b"}))

	w := startSubs(t, url, dataSubjects, "notifier.pub.probe.x.1")
	// Count heartbeats from now on with a client of our own.
	nc, err := nats.Connect(url)
	must(t, err)
	defer nc.Close()
	var beats atomic.Int64
	// Idle directory traffic is the ring probes (notifier.node.<node>.probe);
	// changes and drops go on notifier.dir.>.
	for _, subj := range []string{"notifier.dir.>", "notifier.node.*.probe"} {
		_, err = nc.Subscribe(subj, func(*nats.Msg) { beats.Add(1) })
		must(t, err)
	}
	must(t, nc.Flush())

	must(t, a.Publish("watch", 3, "ev", payload{N: 1}))
	if _, err := a.RPC(rpcCtx(t), "watch", 3, "echo", payload{N: 2}); err != nil {
		t.Fatal(err)
	}
	natsCLI(t, url, "pub", "--no-templates", "notifier.pub."+addr("watch", "ev", 3), `{"n":3}`)
	w.waitFor(t,
		"notifier.fan."+addr("watch", "ev", 3),
		"notifier.node."+b.Node()+".pub."+addr("watch", "ev", 3),
		"notifier.node."+b.Node()+".rpc."+addr("watch", "echo", 3),
		"notifier.pub."+addr("watch", "ev", 3))
	eventually(t, readyTimeout, func() bool { return beats.Load() >= 6 },
		func() string { return fmt.Sprintf("%d directory messages seen", beats.Load()) })
	// The last data message after the heartbeats: everything printed before
	// it has been printed.
	natsCLI(t, url, "pub", "--no-templates", "notifier.pub."+addr("watch", "last", 1), `{}`)
	w.waitFor(t, "notifier.pub."+addr("watch", "last", 1))
	for _, s := range w.subjects() {
		if strings.HasPrefix(s, "notifier.dir.") || strings.HasSuffix(s, ".dir") || strings.HasSuffix(s, ".ack") || strings.HasSuffix(s, ".probe") || strings.HasSuffix(s, ".registrations") {
			t.Errorf("the data watcher printed the directory message %s", s)
		}
	}
}
