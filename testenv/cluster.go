package testenv

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterName is the cluster name of every member of a [StartCluster] cluster.
const clusterName = "testenv"

// cluster is the membership shared by the servers of one [StartCluster] call.
// It is immutable once StartCluster returns.
type cluster struct {
	members []*Server
}

// StartCluster starts n servers on random loopback ports, routed to each
// other in a full mesh, and returns them once every server has a route to
// each of the others. The caller must call [Server.Shutdown] on each.
//
// Route pooling is off: each pair of servers shares exactly one route.
func StartCluster(n int) ([]*Server, error) {
	if n < 1 {
		return nil, fmt.Errorf("testenv: cluster size %d, want at least 1", n)
	}
	c := &cluster{members: make([]*Server, 0, n)}
	for i := range n {
		opts := baseOptions()
		opts.ServerName = fmt.Sprintf("%s-%d", clusterName, i)
		opts.Cluster = server.ClusterOpts{
			Name:     clusterName,
			Host:     host,
			Port:     server.RANDOM_PORT,
			PoolSize: -1,
		}
		s := &Server{opts: opts, cluster: c}
		// Each server routes to the ones before it; gossip completes the mesh.
		opts.Routes = c.routesExcept(nil)
		if err := s.startFirst(); err != nil {
			c.shutdown()
			return nil, err
		}
		c.members = append(c.members, s)
	}
	if err := c.waitFormed(time.Now().Add(readyTimeout)); err != nil {
		c.shutdown()
		return nil, err
	}
	return slices.Clone(c.members), nil
}

// RunCluster is [StartCluster] for a test: it shuts the servers down when t
// ends and fails t with t.Fatal if the cluster does not form.
func RunCluster(t testing.TB, n int) []*Server {
	t.Helper()
	servers, err := StartCluster(n)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for _, s := range servers {
		t.Cleanup(s.Shutdown)
	}
	return servers
}

// routesExcept returns the route URLs of every member but skip.
func (c *cluster) routesExcept(skip *Server) []*url.URL {
	var routes []*url.URL
	for _, m := range c.members {
		if m == skip {
			continue
		}
		routes = append(routes, &url.URL{
			Scheme: "nats",
			Host:   net.JoinHostPort(host, strconv.Itoa(m.opts.Cluster.Port)),
		})
	}
	return routes
}

// waitFormed waits, at most until deadline, until every running member has
// exactly one route to each other running member and none to a stopped one.
func (c *cluster) waitFormed(deadline time.Time) error {
	for {
		err := c.checkFormed()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: cluster not formed: %w", err)
		}
		time.Sleep(pollInterval)
	}
}

// checkFormed returns nil if the running members are fully meshed.
func (c *cluster) checkFormed() error {
	var running []*server.Server
	for _, m := range c.members {
		if srv := m.Server(); srv != nil {
			running = append(running, srv)
		}
	}
	for _, srv := range running {
		rz, err := srv.Routez(nil)
		if err != nil {
			return fmt.Errorf("routez of %s: %w", srv.Name(), err)
		}
		var got []string
		for _, r := range rz.Routes {
			got = append(got, r.RemoteID)
		}
		var want []string
		for _, other := range running {
			if other != srv {
				want = append(want, other.ID())
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s has routes to %v, want %v", srv.Name(), got, want)
		}
	}
	return nil
}

// shutdown stops every member.
func (c *cluster) shutdown() {
	for _, m := range c.members {
		m.Shutdown()
	}
}
