package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// serverReadyTimeout bounds the start of the embedded server.
const serverReadyTimeout = 10 * time.Second

// serverConfig is the embedded server of "notifier serve".
type serverConfig struct {
	host        string
	port        int // -1: random
	name        string
	clusterName string
	clusterPort int // 0: no cluster; -1: random
	routes      string
	verbose     bool // log the server's notices
}

// startServer starts the embedded nats-server and returns it once it accepts
// connections, with the URL to connect to it.
func startServer(c serverConfig, log *slog.Logger) (*server.Server, string, error) {
	opts := &server.Options{
		Host:       c.host,
		Port:       c.port,
		ServerName: c.name,
		NoSigs:     true, // serve handles SIGINT and SIGTERM
		NoLog:      true, // logs go through slog instead
	}
	if c.clusterPort != 0 {
		opts.Cluster = server.ClusterOpts{Name: c.clusterName, Host: c.host, Port: c.clusterPort}
	}
	if c.routes != "" {
		opts.Routes = server.RoutesFromStr(c.routes)
	}
	// nats-server only logs a failure to listen; check the ports first for a
	// clear error.
	for _, p := range []int{c.port, c.clusterPort} {
		if p <= 0 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(c.host, strconv.Itoa(p)))
		if err != nil {
			return nil, "", fmt.Errorf("cannot listen on %s:%d (another NATS server? use --port, or --url to join it): %w", c.host, p, err)
		}
		_ = l.Close()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, "", err
	}
	srv.SetLoggerV2(&serverLog{log: log.With("component", "nats-server"), verbose: c.verbose}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(serverReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, "", errors.New("the embedded NATS server did not start")
	}
	host := c.host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // listening everywhere: connect over loopback
	}
	port := srv.Addr().(*net.TCPAddr).Port
	return srv, "nats://" + net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// serverLog adapts nats-server's logger to slog.
type serverLog struct {
	log     *slog.Logger
	verbose bool
}

func (l *serverLog) Noticef(format string, v ...any) {
	if l.verbose {
		l.log.Info(strings.TrimSpace(fmt.Sprintf(format, v...)))
	}
}
func (l *serverLog) Warnf(format string, v ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l *serverLog) Fatalf(format string, v ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l *serverLog) Errorf(format string, v ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l *serverLog) Debugf(string, ...any) {}
func (l *serverLog) Tracef(string, ...any) {}
