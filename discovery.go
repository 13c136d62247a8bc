package notifier

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/micro"

	"github.com/natsnotifier/notifier/bus"
)

// Version is reported in service discovery.
const Version = "0.1.0"

// ServiceName is the NATS micro service name every Notifier answers to in
// service discovery: `nats micro ls`, `nats micro info notifier`,
// `nats micro stats notifier`.
const ServiceName = "notifier"

// Registration describes one of this Notifier's registrations, as
// Registrations and the discovery endpoint report it.
type Registration struct {
	Kind   string  `json:"kind"` // "pub" or "rpc"
	Object string  `json:"object"`
	Cmd    string  `json:"cmd"`
	Mask   int64   `json:"mask"`
	Value  int64   `json:"value"`
	Slice  bool    `json:"slice"`
	Weight float64 `json:"weight,omitempty"`
}

// Registrations lists this Notifier's registrations, sorted.
func (n *Notifier) Registrations() []Registration {
	n.mu.RLock()
	out := make([]Registration, 0, len(n.byID))
	for _, r := range n.byID {
		out = append(out, Registration{
			Kind: r.key.kind.String(), Object: r.key.object, Cmd: r.key.cmd,
			Mask: r.key.pattern.Mask, Value: r.key.pattern.Value, Slice: r.slice, Weight: r.weight,
		})
	}
	n.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Object != b.Object {
			return a.Object < b.Object
		}
		if a.Cmd != b.Cmd {
			return a.Cmd < b.Cmd
		}
		if a.Mask != b.Mask {
			return a.Mask < b.Mask
		}
		return a.Value < b.Value
	})
	return out
}

// discoveryStats is the "data" of the registrations endpoint in $SRV.STATS.
type discoveryStats struct {
	Stats
	Registrations int `json:"registrations"`
	Peers         int `json:"peers"`
	BusPub        int `json:"bus_pub_registrations"`
	BusRPC        int `json:"bus_rpc_registrations"`
}

// startDiscovery registers this Notifier as an instance of the NATS micro
// service "notifier", with one endpoint, <prefix>.node.<node>.registrations,
// answering with the registrations as JSON.
func (n *Notifier) startDiscovery() error {
	svc, err := micro.AddService(n.nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "Notifier: pub/sub and RPC addressed by (object, id, cmd)",
		Metadata:    map[string]string{"node": n.node, "prefix": n.subj.Prefix},
		StatsHandler: func(*micro.Endpoint) any {
			n.mu.RLock()
			regs := len(n.byID)
			n.mu.RUnlock()
			return discoveryStats{
				Stats: n.Stats(), Registrations: regs, Peers: len(n.dir.Peers()),
				BusPub: n.dir.Len(bus.KindPub), BusRPC: n.dir.Len(bus.KindRPC),
			}
		},
	})
	if err != nil {
		return fmt.Errorf("notifier: service discovery: %w", err)
	}
	err = svc.AddEndpoint("registrations", micro.HandlerFunc(func(r micro.Request) {
		data, err := json.Marshal(n.Registrations())
		if err != nil {
			_ = r.Error("500", err.Error(), nil)
			return
		}
		_ = r.Respond(data)
	}), micro.WithEndpointSubject(n.subj.NodeRegistrations(n.node)), micro.WithEndpointQueueGroupDisabled())
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("notifier: service discovery: %w", err)
	}
	n.svc = svc
	return nil
}
