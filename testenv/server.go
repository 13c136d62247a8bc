package testenv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds every wait of this package: a server accepting
// connections, a port becoming free, a cluster forming.
const readyTimeout = 10 * time.Second

// pollInterval is how often a bounded wait checks its condition again.
const pollInterval = 10 * time.Millisecond

// host is where every server listens.
const host = "127.0.0.1"

// ErrRunning is returned by [Server.Start] when the server is already running.
var ErrRunning = errors.New("testenv: server is running")

// Server is an embedded nats-server listening on a loopback port. Its client
// port (and cluster port, for a cluster member) is chosen at random when it is
// first started and kept across [Server.Restart]. Its methods are safe for
// concurrent use.
type Server struct {
	opts    *server.Options // template for each start; ports pinned after the first
	cluster *cluster        // nil for a stand-alone server
	conf    string          // nats-server configuration from the options, parsed at each start
	scheme  string          // of the URL: "" (nats) or "tls"
	url     string

	// opMu serialises starting and stopping.
	opMu sync.Mutex
	// mu guards srv, which is nil while the server is stopped.
	mu  sync.Mutex
	srv *server.Server
}

// Start starts a stand-alone server on a random loopback port, configured by
// opts (none: every client is accepted). The caller must call
// [Server.Shutdown].
func Start(opts ...Option) (*Server, error) {
	var c config
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	conf, err := c.render()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: baseOptions(), conf: conf}
	if c.tls != nil {
		s.scheme = "tls"
	}
	if err := s.startFirst(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run starts a stand-alone server on a random loopback port, configured by
// opts (none: every client is accepted), and shuts it down when t ends. It
// fails t with t.Fatal if the server does not start.
func Run(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := Start(opts...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// URL returns the client URL, nats://127.0.0.1:<port> (tls://... for a
// server started [WithTLS]). It stays the same across restarts.
func (s *Server) URL() string { return s.url }

// Server returns the running nats-server, or nil while s is stopped. A
// restart replaces it.
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Shutdown stops the server and waits until it has stopped. It may be called
// more than once, and on a stopped server.
func (s *Server) Shutdown() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.stop()
}

// Restart stops the server if it is running and starts it again on the same
// ports. It returns once the server accepts connections and, for a cluster
// member, once the routes between all running members have formed again. It
// fails t with t.Fatal otherwise.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.opMu.Lock()
	s.stop()
	err := s.start()
	s.opMu.Unlock()
	if err != nil {
		t.Fatalf("testenv: restart %s: %v", s.url, err)
	}
}

// Start starts a stopped server again on the ports it had, and returns once it
// accepts connections and, for a cluster member, once the routes between all
// running members have formed again. It returns [ErrRunning] if the server is
// running. Another process may have taken the ports meanwhile; Start waits up
// to 10 s for them to be free.
func (s *Server) Start() error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.start()
}

// start is Start with s.opMu held.
func (s *Server) start() error {
	if s.Server() != nil {
		return ErrRunning
	}
	deadline := time.Now().Add(readyTimeout)
	opts, err := s.options()
	if err != nil {
		return err
	}
	if s.cluster != nil {
		opts.Routes = s.cluster.routesExcept(s)
	}
	if err := waitPortFree(opts.Port, deadline); err != nil {
		return err
	}
	if s.cluster != nil {
		if err := waitPortFree(opts.Cluster.Port, deadline); err != nil {
			return err
		}
	}
	srv, err := startServer(opts, deadline)
	if err != nil {
		return err
	}
	s.setServer(srv)
	if s.cluster != nil {
		return s.cluster.waitFormed(deadline)
	}
	return nil
}

// startFirst starts s on random ports and pins them in s.opts.
func (s *Server) startFirst() error {
	opts, err := s.options()
	if err != nil {
		return err
	}
	srv, err := startServer(opts, time.Now().Add(readyTimeout))
	if err != nil {
		return err
	}
	port := srv.Addr().(*net.TCPAddr).Port
	s.opts.Port = port
	if s.cluster != nil {
		s.opts.Cluster.Port = srv.ClusterAddr().Port
	}
	scheme := "nats"
	if s.scheme != "" {
		scheme = s.scheme
	}
	s.url = scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
	s.setServer(srv)
	return nil
}

func (s *Server) setServer(srv *server.Server) {
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// stop shuts the server down and waits for it. The caller holds s.opMu.
func (s *Server) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// options returns the server options of the next start: s.opts with the
// configuration parsed afresh (a server keeps pointers into its options, such
// as accounts, so no two starts share them).
func (s *Server) options() (*server.Options, error) {
	opts := s.opts.Clone()
	if s.conf == "" {
		return opts, nil
	}
	parsed := &server.Options{}
	if err := parsed.ProcessConfigString(s.conf); err != nil {
		return nil, fmt.Errorf("testenv: server configuration: %w", err)
	}
	parsed.Host, parsed.Port = opts.Host, opts.Port
	parsed.NoLog, parsed.NoSigs = true, true
	parsed.ServerName = opts.ServerName
	return parsed, nil
}

// baseOptions are the options of a quiet stand-alone server on a random
// loopback port. Port 0 would mean the default 4222, hence -1.
func baseOptions() *server.Options {
	return &server.Options{
		Host:   host,
		Port:   server.RANDOM_PORT,
		NoLog:  true,
		NoSigs: true,
	}
}

// startServer starts a server with opts and waits until it accepts
// connections, at most until deadline.
func startServer(opts *server.Options, deadline time.Time) (*server.Server, error) {
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("testenv: new server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(time.Until(deadline)) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("testenv: server on %s not ready for connections", net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)))
	}
	return srv, nil
}

// waitPortFree waits until port can be listened on, at most until deadline.
// The server's own listener has closed by then; this covers a port that the
// kernel, or another process, has not released yet.
func waitPortFree(port int, deadline time.Time) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: port %s not free: %w", addr, err)
		}
		time.Sleep(pollInterval)
	}
}
