package e2e

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// The users and prefix of the README's permissions block.
const (
	permPrefix     = "P"
	notifierUser   = "notifier"
	notifierPass   = "change-me-notifier"
	gatewayUser    = "gateway"
	gatewayPass    = "change-me-gateway"
	violationsWait = 10 * time.Second
)

// permServer runs an embedded server with exactly the README's
// permissions block.
func permServer(t *testing.T) *testenv.Server {
	t.Helper()
	return testenv.Run(t, testenv.WithConfig(readmeBlock(t, "notifier-permissions")))
}

// TestNotifierPermissions: Notifiers logged in with the README's NOTIFIER
// permissions join, deliver to full and slice registrations, answer RPC and
// RPCs, survive a server restart and close, with no permission violation.
func TestNotifierPermissions(t *testing.T) {
	srv := permServer(t)
	auth := nats.UserInfo(notifierUser, notifierPass)
	a, logsA := connectWith(t, srv.URL(), permPrefix, 1, auth)
	b, logsB := connectWith(t, srv.URL(), permPrefix, 2, auth)

	const object = "smoke"
	fullA, fullB, sliceA, sliceB := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	must(t, a.Subscribe(object, notifier.Match{}, "ev", fullA))   // fan-out path
	must(t, b.Subscribe(object, notifier.Exact(5), "ev", fullB))  // node-routed path
	must(t, a.Slice(object, notifier.Match{}, "work", sliceA, 1)) // slices on both
	must(t, b.Slice(object, notifier.Match{}, "work", sliceB, 1))
	must(t, a.RPCRegister(object, notifier.Match{}, "echo", &echoResponder{name: "a"}))
	must(t, b.RPCRegister(object, notifier.Match{}, "echo", &echoResponder{name: "b"}))

	const count = 20
	for i := range count {
		must(t, b.Publish(object, 5, "ev", payload{N: i}))
		must(t, a.Publish(object, 5, "work", payload{N: i}))
	}
	eventually(t, readyTimeout, func() bool {
		return fullA.count() == count && fullB.count() == count && sliceA.count()+sliceB.count() == count
	}, func() string {
		return fmt.Sprintf("full %d, %d; slices %d+%d of %d", fullA.count(), fullB.count(), sliceA.count(), sliceB.count(), count)
	})

	results, err := a.RPC(rpcCtx(t), object, 1, "echo", payload{N: 7})
	if err != nil || !reflect.DeepEqual(whoAnswered(t, results), []string{"a", "b"}) {
		t.Fatalf("RPC: %v, %v", results, err)
	}
	all, err := b.RPCs(rpcCtx(t), object, []int64{1, 2, 3}, "echo", payload{N: 8})
	if err != nil || len(all) != 3 {
		t.Fatalf("RPCs: %v, %v", all, err)
	}
	for i, rs := range all {
		if got := whoAnswered(t, rs); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("RPCs id %d: answered by %v", i+1, got)
		}
	}

	// A server restart: the Notifiers reconnect and re-announce; a publish
	// reaches both again, and RPCs work.
	srv.Restart(t)
	before := fullB.count()
	eventually(t, readyTimeout, func() bool {
		_ = a.Publish(object, 5, "ev", payload{N: 100})
		return fullB.count() > before
	}, func() string { return "no delivery after the restart" })
	eventually(t, readyTimeout, func() bool {
		rs, err := b.RPC(rpcCtx(t), object, 1, "echo", payload{N: 9})
		return err == nil && len(rs) == 2
	}, func() string { return "RPC does not reach both after the restart" })

	for name, n := range map[string]*notifier.Notifier{"A": a, "B": b} {
		if err := n.Close(); err != nil {
			t.Errorf("Close %s: %v", name, err)
		}
	}
	noViolation(t, "A", logsA)
	noViolation(t, "B", logsB)
}

// violations collects the async errors of a raw client.
type violations chan error

func (v violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	select {
	case v <- err:
	default: // more than the test waits for
	}
}

// wait returns the first permissions violation naming subject.
func (v violations) wait(t *testing.T, verb, subject string) {
	t.Helper()
	deadline := time.After(violationsWait)
	for {
		select {
		case err := <-v:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), verb) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %s %q", verb, subject)
		}
	}
}

// TestGatewayPermissions: a client with the README's GATEWAY permissions
// publishes and requests through the gateway with the real nats CLI; its
// attempts to publish on the directory, node, fan-out and member subjects or
// into an inbox, and to subscribe where it could read routed traffic or
// answer RPCs, are refused by the server and change nothing on the bus.
func TestGatewayPermissions(t *testing.T) {
	srv := permServer(t)
	tools(t)
	auth := nats.UserInfo(notifierUser, notifierPass)
	a, logsA := connectWith(t, srv.URL(), permPrefix, 1, auth)
	b, logsB := connectWith(t, srv.URL(), permPrefix, 2, auth)
	const object = "gw"
	fullA, fullB := &recorder{}, &recorder{}
	must(t, a.Subscribe(object, notifier.Match{}, "log", fullA))
	must(t, b.Subscribe(object, notifier.Exact(1), "log", fullB))
	must(t, b.RPCRegister(object, notifier.Match{}, "echo", &echoResponder{name: "b"}))

	gwURL := strings.Replace(srv.URL(), "nats://", "nats://"+gatewayUser+":"+gatewayPass+"@", 1)
	natsCLI(t, gwURL, "pub", "--no-templates", permPrefix+".pub."+addr(object, "log", 1), `{"n":1}`)
	eventually(t, readyTimeout, func() bool { return fullA.count() == 1 && fullB.count() == 1 },
		func() string { return fmt.Sprintf("gateway publish: %d, %d", fullA.count(), fullB.count()) })
	reply := natsReq(t, gwURL, permPrefix+".rpc."+addr(object, "echo", 1), `{"n":2}`)
	if reply.Error != "" || len(reply.Results) != 1 || !strings.Contains(string(reply.Results[0].Value), `"who":"b"`) {
		t.Fatalf("gateway RPC: %+v", reply)
	}

	v := make(violations, 64)
	gw, err := nats.Connect(srv.URL(), nats.UserInfo(gatewayUser, gatewayPass), nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	statsBefore := []notifier.Stats{a.Stats(), b.Stats()}
	for _, subject := range []string{
		permPrefix + ".dir.ann." + a.Node(),                                 // a forged announcement or goodbye
		permPrefix + ".node." + a.Node() + ".pub." + addr(object, "log", 1), // routed data
		permPrefix + ".node." + b.Node() + ".rpc." + addr(object, "echo", 1),
		permPrefix + ".node." + a.Node() + ".dir",
		permPrefix + ".node." + a.Node() + ".ack",
		permPrefix + ".fan." + addr(object, "log", 1),
		"_NOTIFIER." + permPrefix + ".members",
		"_INBOX.forged-reply", // answering someone's request
	} {
		if err := gw.Publish(subject, []byte{0x93, 0x01, 0x02, 0x03}); err != nil {
			t.Fatal(err)
		}
		v.wait(t, "publish", subject)
	}
	for _, subject := range []string{
		permPrefix + ".node.>", permPrefix + ".dir.>", permPrefix + ".rpc.>", permPrefix + ".pub.>",
		permPrefix + ".node." + b.Node() + ".rpc.>", "_NOTIFIER." + permPrefix + ".members",
	} {
		if _, err := gw.QueueSubscribe(subject, "impostor", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		v.wait(t, "subscription", subject)
	}

	// Nothing changed: no forged message arrived or was counted, the same
	// registrations answer, and a gateway publish still reaches both.
	if got := []notifier.Stats{a.Stats(), b.Stats()}; got[0].Undecodable != statsBefore[0].Undecodable || got[1].Undecodable != statsBefore[1].Undecodable {
		t.Errorf("undecodable counters moved: %+v -> %+v", statsBefore, got)
	}
	natsCLI(t, gwURL, "pub", "--no-templates", permPrefix+".pub."+addr(object, "log", 1), `{"n":3}`)
	eventually(t, readyTimeout, func() bool { return fullA.count() == 2 && fullB.count() == 2 },
		func() string { return fmt.Sprintf("after the attempts: %d, %d", fullA.count(), fullB.count()) })
	for name, r := range map[string]*recorder{"A": fullA, "B": fullB} {
		if got := r.counts(); !reflect.DeepEqual(got, map[int]int{1: 1, 3: 1}) {
			t.Errorf("%s received %v, want only the two gateway publishes", name, got)
		}
	}
	results, err := a.RPC(rpcCtx(t), object, 1, "echo", payload{N: 4})
	if err != nil || !reflect.DeepEqual(whoAnswered(t, results), []string{"b"}) {
		t.Errorf("RPC after the attempts: %v, %v", results, err)
	}
	noViolation(t, "A", logsA)
	noViolation(t, "B", logsB)
}
