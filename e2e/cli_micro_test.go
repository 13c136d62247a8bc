package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/natsnotifier/notifier"
)

// microInfo is one service instance as `nats micro ls|info --json` prints it
// (the $SRV.INFO reply of the NATS micro protocol).
type microInfo struct {
	Name      string            `json:"name"`
	ID        string            `json:"id"`
	Version   string            `json:"version"`
	Metadata  map[string]string `json:"metadata"`
	Endpoints []microEndpoint   `json:"endpoints"`
}

type microEndpoint struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
}

// microStats is one instance in `nats micro stats --json` ($SRV.STATS).
type microStats struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	Endpoints []struct {
		Name string          `json:"name"`
		Data json.RawMessage `json:"data"`
	} `json:"endpoints"`
}

// decodeJSON decodes the CLI's output into v, failing t.
func decodeJSON(t testing.TB, what, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, out)
	}
}

// counters normalises the keys of the stats data ("RPCServed", "rpc_served"
// -> "rpcserved") and keeps the numbers.
func counters(data json.RawMessage) map[string]float64 {
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if f, ok := v.(float64); ok {
			out[strings.ReplaceAll(strings.ToLower(k), "_", "")] = f
		}
	}
	return out
}

// TestCLIMicro: every Notifier is an instance of the NATS micro service
// "notifier", visible with `nats micro ls|info|stats`, its metadata naming
// its node and its stats holding its counters.
func TestCLIMicro(t *testing.T) { forEachServer(t, testCLIMicro) }

func testCLIMicro(t *testing.T, url string) {
	a, b := connect(t, url, 1), connect(t, url, 2)
	must(t, a.Subscribe("e2emicro", notifier.Match{}, "ping", &recorder{}))
	must(t, b.RPCRegister("e2emicro", notifier.Match{}, "ask", &responder{name: "b"}))
	must(t, b.RPCSlice("e2emicro", notifier.Exact(3), "ask", &responder{name: "b2"}, 2))
	must(t, b.Publish("e2emicro", 1, "ping", nil))
	if _, err := a.RPC(context.Background(), "e2emicro", 3, "ask", nil); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*notifier.Notifier{a.Node(): a, b.Node(): b}
	wantRegs := map[string][]string{
		a.Node(): {"pub e2emicro.ping slice=false weight=0"},
		b.Node(): {"rpc e2emicro.ask slice=false weight=0", "rpc e2emicro.ask slice=true weight=2"},
	}

	// ls: one instance per Notifier. The CLI stops listening 300 ms after the
	// last reply, so a slow instance may be missed: ask again until both show.
	var list []microInfo
	eventually(t, gatewayTimeout, func() bool {
		list = nil
		decodeJSON(t, "nats micro ls --json", natsCLI(t, url, "micro", "ls", "--json"), &list)
		return len(list) >= 2
	}, func() string { return fmt.Sprintf("nats micro ls: %+v, want 2 instances", list) })
	ids := map[string]string{} // instance id -> node
	for _, in := range list {
		if in.Name != notifier.ServiceName {
			t.Errorf("service %q listed, want only %q", in.Name, notifier.ServiceName)
			continue
		}
		node := in.Metadata["node"]
		if nodes[node] == nil {
			t.Errorf("instance %s has metadata %v, want a node of %v", in.ID, in.Metadata, slices.Sorted(maps.Keys(nodes)))
		}
		ids[in.ID] = node
	}
	if got := slices.Sorted(maps.Values(ids)); !slices.Equal(got, slices.Sorted(maps.Keys(nodes))) {
		t.Fatalf("instances' nodes %v, want one instance per Notifier %v", got, slices.Sorted(maps.Keys(nodes)))
	}

	// info: per instance, the metadata names its node.
	for id, node := range ids {
		var info struct {
			Info microInfo `json:"info"`
		}
		decodeJSON(t, "nats micro info", natsCLI(t, url, "micro", "info", notifier.ServiceName, id, "--json"), &info)
		if info.Info.ID != id || info.Info.Name != notifier.ServiceName || info.Info.Metadata["node"] != node {
			t.Errorf("nats micro info %s: %+v, want node %s", id, info.Info, node)
		}
		if info.Info.Version == "" || len(info.Info.Endpoints) == 0 {
			t.Errorf("nats micro info %s: no version or no endpoints: %+v", id, info.Info)
		}
		// The registrations endpoint, found through info, lists the
		// instance's own registrations.
		i := slices.IndexFunc(info.Info.Endpoints, func(e microEndpoint) bool { return e.Name == "registrations" })
		if i < 0 {
			t.Errorf("nats micro info %s: no registrations endpoint in %+v", id, info.Info.Endpoints)
			continue
		}
		var regs []struct {
			Kind   string  `json:"kind"`
			Object string  `json:"object"`
			Cmd    string  `json:"cmd"`
			Slice  bool    `json:"slice"`
			Weight float64 `json:"weight"`
		}
		decodeJSON(t, "registrations", natsCLI(t, url, "req", "--raw", info.Info.Endpoints[i].Subject, ""), &regs)
		var got []string
		for _, r := range regs {
			got = append(got, fmt.Sprintf("%s %s.%s slice=%v weight=%g", r.Kind, r.Object, r.Cmd, r.Slice, r.Weight))
		}
		slices.Sort(got)
		if !slices.Equal(got, wantRegs[node]) {
			t.Errorf("registrations of %s: %q, want %q", node, got, wantRegs[node])
		}
	}

	// stats: one entry per instance, with the counters of its Notifier.
	var stats []microStats
	decodeJSON(t, "nats micro stats --json", natsCLI(t, url, "micro", "stats", notifier.ServiceName, "--json"), &stats)
	seen := map[string]bool{}
	for _, s := range stats {
		node, ok := ids[s.ID]
		if !ok {
			t.Errorf("stats of unknown instance %s", s.ID)
			continue
		}
		seen[s.ID] = true
		want := nodes[node].Stats()
		var c map[string]float64
		for _, e := range s.Endpoints {
			if c = counters(e.Data); c != nil {
				break
			}
		}
		for _, k := range []string{"published", "delivered", "dropped", "rpcserved", "rpcerrors"} {
			if _, ok := c[k]; !ok {
				t.Errorf("stats of %s: no counter %q in %v", node, k, c)
			}
		}
		if c["published"] != float64(want.Published) || c["rpcserved"] != float64(want.RPCServed) {
			t.Errorf("stats of %s: %v, want published %d, rpcserved %d", node, c, want.Published, want.RPCServed)
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("nats micro stats covered %d of %d instances: %+v", len(seen), len(ids), stats)
	}
}
