package e2e

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// TestAccountsIsolateBuses: two accounts on one server, each with two
// Notifiers on the same (default) prefix and the same registrations, never
// see each other's registrations or traffic.
func TestAccountsIsolateBuses(t *testing.T) {
	srv := testenv.Run(t, testenv.WithAccounts(
		testenv.Account{Name: "A", Users: []testenv.User{{Name: "a", Password: "pa"}}},
		testenv.Account{Name: "B", Users: []testenv.User{{Name: "b", Password: "pb"}}},
	))
	type member struct {
		n     *notifier.Notifier
		full  *recorder
		slice *recorder
	}
	join := func(name, user, pass string, seed uint64) member {
		n, _ := connectWith(t, srv.URL(), notifier.DefaultPrefix, seed, nats.UserInfo(user, pass))
		m := member{n: n, full: &recorder{}, slice: &recorder{}}
		must(t, n.Subscribe("iso", notifier.Match{}, "ev", m.full))
		must(t, n.Slice("iso", notifier.Match{}, "work", m.slice, 1))
		must(t, n.RPCRegister("iso", notifier.Match{}, "who", &echoResponder{name: name}))
		return m
	}
	a1, a2 := join("a1", "a", "pa", 1), join("a2", "a", "pa", 2)
	b1, b2 := join("b1", "b", "pb", 3), join("b2", "b", "pb", 4)

	const nA, nB = 10, 5
	for i := range nA {
		must(t, a1.n.Publish("iso", 1, "ev", payload{N: i}))
		must(t, a1.n.Publish("iso", 1, "work", payload{N: i}))
	}
	for i := range nB {
		must(t, b1.n.Publish("iso", 1, "ev", payload{N: 100 + i}))
		must(t, b1.n.Publish("iso", 1, "work", payload{N: 100 + i}))
	}
	eventually(t, readyTimeout, func() bool {
		return a1.full.count() == nA && a2.full.count() == nA && b1.full.count() == nB && b2.full.count() == nB &&
			a1.slice.count()+a2.slice.count() == nA && b1.slice.count()+b2.slice.count() == nB
	}, func() string {
		return fmt.Sprintf("full %d %d %d %d, slices A %d, B %d", a1.full.count(), a2.full.count(), b1.full.count(), b2.full.count(),
			a1.slice.count()+a2.slice.count(), b1.slice.count()+b2.slice.count())
	})
	// A last round trip in each account lets any cross-account straggler show.
	for _, m := range []member{a1, b1} {
		results, err := m.n.RPC(rpcCtx(t), "iso", 1, "who", payload{})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"a1", "a2"}
		if m.n == b1.n {
			want = []string{"b1", "b2"}
		}
		if got := whoAnswered(t, results); !reflect.DeepEqual(got, want) {
			t.Errorf("RPC answered by %v, want %v", got, want)
		}
	}
	for name, r := range map[string]*recorder{"a1": a1.full, "a2": a2.full, "b1": b1.full, "b2": b2.full} {
		for n := range r.counts() {
			if (name[0] == 'a') != (n < 100) {
				t.Errorf("%s received %d, published in the other account", name, n)
			}
		}
	}
	// Each directory knows only its own account: one peer, and the four
	// notification registrations of its account (two full, two slices).
	for _, acc := range []struct{ user, pass string }{{"a", "pa"}, {"b", "pb"}} {
		nc, err := nats.Connect(srv.URL(), nats.UserInfo(acc.user, acc.pass))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		peers, regs := directoryStats(t, nc)
		if peers != 1 || regs != 4 {
			t.Errorf("account of %s: a directory knows %d peer(s) and %d registrations, want 1 and 4", acc.user, peers, regs)
		}
	}
	if got := a1.full.count() + a2.full.count() + b1.full.count() + b2.full.count(); got != 2*nA+2*nB {
		t.Errorf("%d full deliveries, want %d", got, 2*nA+2*nB)
	}
}

// directoryStats asks one Notifier reachable from nc, through its micro
// service, how many peers and notification registrations its directory
// holds.
func directoryStats(t *testing.T, nc *nats.Conn) (peers, pubRegs int) {
	t.Helper()
	m, err := nc.Request("$SRV.PING."+notifier.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ping struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(m.Data, &ping); err != nil || ping.ID == "" {
		t.Fatalf("ping reply %q: %v", m.Data, err)
	}
	m, err = nc.Request("$SRV.STATS."+notifier.ServiceName+"."+ping.ID, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Endpoints []struct {
			Data struct {
				Peers  int `json:"peers"`
				BusPub int `json:"bus_pub_registrations"`
			} `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(m.Data, &stats); err != nil || len(stats.Endpoints) != 1 {
		t.Fatalf("stats reply %q: %v", m.Data, err)
	}
	return stats.Endpoints[0].Data.Peers, stats.Endpoints[0].Data.BusPub
}
