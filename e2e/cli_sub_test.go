package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
)

// lineWriter collects a process's output by lines.
type lineWriter struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := slices.Index(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines = append(w.lines, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
}

func (w *lineWriter) snapshot() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines)
}

// receivedRE matches the line `nats sub` prints for each message.
var receivedRE = regexp.MustCompile(`^\[#\d+\] Received on "([^"]+)"`)

// cliSub is a running `nats sub`.
type cliSub struct {
	out *lineWriter
}

// subjects are the subjects of the messages the CLI has printed so far.
func (s *cliSub) subjects() []string {
	var subs []string
	for _, l := range s.out.snapshot() {
		if m := receivedRE.FindStringSubmatch(l); m != nil {
			subs = append(subs, m[1])
		}
	}
	return subs
}

// waitFor waits until the CLI has printed every one of subjects.
func (s *cliSub) waitFor(t testing.TB, subjects ...string) {
	t.Helper()
	missing := func() []string {
		seen := s.subjects()
		var miss []string
		for _, want := range subjects {
			if !slices.Contains(seen, want) {
				miss = append(miss, want)
			}
		}
		return miss
	}
	eventually(t, gatewayTimeout, func() bool { return len(missing()) == 0 }, func() string {
		return fmt.Sprintf("nats sub did not show %v; it printed:\n%s", missing(), strings.Join(s.out.snapshot(), "\n"))
	})
}

// startSub runs `nats sub <subject>` in the background until t ends, and
// returns once it is subscribed: a probe published on probeSubject (which
// subject must match) has been printed.
func startSub(t *testing.T, url, subject, probeSubject string) *cliSub {
	t.Helper()
	return startSubs(t, url, []string{subject}, probeSubject)
}

// startSubs is startSub for `nats sub <subject>...`.
func startSubs(t *testing.T, url string, subjects []string, probeSubject string) *cliSub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := cliCommand(ctx, t, url, append([]string{"sub"}, subjects...)...)
	s := &cliSub{out: &lineWriter{}}
	var stderr lineWriter
	cmd.Stdout, cmd.Stderr = s.out, &stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) } // the CLI exits cleanly on SIGINT
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("nats sub: %v", err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed once waitErr is set
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited: // stopped by us: its exit status says nothing
		case <-time.After(cliTimeout):
			t.Errorf("nats sub did not exit")
		}
		if t.Failed() {
			t.Logf("nats sub stderr:\n%s", strings.Join(stderr.snapshot(), "\n"))
		}
	})

	// The CLI logs "Subscribing on" before it subscribes, so readiness is
	// proved by a probe arriving, republished until one does.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond) // polling with a deadline, not synchronising
	defer tick.Stop()
	for !slices.Contains(s.subjects(), probeSubject) {
		select {
		case <-exited:
			t.Fatalf("nats sub exited: %v\nstderr:\n%s", waitErr, strings.Join(stderr.snapshot(), "\n"))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats sub not receiving after %v; stdout:\n%s\nstderr:\n%s", readyTimeout,
				strings.Join(s.out.snapshot(), "\n"), strings.Join(stderr.snapshot(), "\n"))
		}
		must(t, nc.Publish(probeSubject, []byte("probe")))
		must(t, nc.FlushTimeout(readyTimeout))
		<-tick.C
	}
	return s
}

// TestCLISubscribe: `nats sub 'notifier.>'` shows publishes and RPCs, from
// the library and from the CLI, with object, cmd and id in the subject.
func TestCLISubscribe(t *testing.T) { forEachServer(t, testCLISubscribe) }

func testCLISubscribe(t *testing.T, url string) {
	a, b := connect(t, url, 1), connect(t, url, 2)
	const object = "e2esub"
	must(t, a.Subscribe(object, notifier.Match{}, "ping", &recorder{}))
	must(t, a.RPCRegister(object, notifier.Match{}, "ask", &responder{name: "a"}))
	s := startSub(t, url, "notifier.>", "notifier.e2e.probe")
	routed := "notifier.node." + a.Node() + "."

	// From the library: a registration for every id (Match{}) is reached on
	// the shared fan-out subject; an RPC's routed subject names the node.
	must(t, b.Publish(object, 42, "ping", map[string]any{"n": 42}))
	s.waitFor(t, "notifier.fan."+addr(object, "ping", 42))
	res, err := b.RPC(context.Background(), object, 43, "ask", map[string]any{"n": 43})
	if err != nil || len(res) != 1 {
		t.Fatalf("RPC: %v, %v", res, err)
	}
	s.waitFor(t, routed+"rpc."+addr(object, "ask", 43))

	// From the CLI: the gateway subject, then the routed ones. The gateway is
	// whichever Notifier the queue group picks, and a Notifier delivers to its
	// own node-routed registrations without NATS, so with an exact-id
	// Subscriber on B the node-routed message is on the wire only when A is
	// the gateway; the fan-out message for A's Match{} registration always is.
	must(t, b.Subscribe(object, notifier.Exact(-44), "ping", &recorder{}))
	natsCLI(t, url, "pub", "--no-templates", "notifier.pub."+addr(object, "ping", -44), `{"n":-44}`)
	s.waitFor(t, "notifier.pub."+addr(object, "ping", -44), "notifier.fan."+addr(object, "ping", -44))
	if slices.Contains(s.subjects(), routed+"pub."+addr(object, "ping", -44)) {
		t.Errorf("A's Match{} registration was reached on its node subject, not the fan-out subject")
	}
	if r := natsReq(t, url, "notifier.rpc."+addr(object, "ask", 45), `{"n":45}`); len(r.Results) != 1 {
		t.Fatalf("nats req: %+v", r)
	}
	s.waitFor(t, "notifier.rpc."+addr(object, "ask", 45), routed+"rpc."+addr(object, "ask", 45))
	// The CLI's JSON body is shown as sent.
	if !slices.Contains(s.out.snapshot(), `{"n":-44}`) {
		t.Errorf("nats sub did not print the JSON body {\"n\":-44}:\n%s", strings.Join(s.out.snapshot(), "\n"))
	}
}
