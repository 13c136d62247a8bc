package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/internal/redact"
)

const serveDoc = `Runs an embedded NATS server (default 127.0.0.1:4222), or joins the NATS
system at --url, and registers an example service under object "demo", so that
the bus can be tried with the nats CLI or the other commands. Logs every
notification and call it receives to stderr. Runs until Ctrl-C or SIGTERM, then
leaves the bus cleanly.

The embedded server may join a NATS cluster: give it a --cluster-port and
--routes to the other members' cluster ports.

Examples:
  notifier serve                                  # NATS on 127.0.0.1:4222
  notifier serve --host 0.0.0.0 --port 4333
  notifier serve --url nats://127.0.0.1:4222      # one more service instance
  notifier serve --port 4222 --cluster-port 6222 --routes nats://127.0.0.1:6223
  notifier serve --port 4223 --cluster-port 6223 --routes nats://127.0.0.1:6222
`

func runServe(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := newFlags("serve", "[flags]", serveDoc)
	conn := addConnFlagsFor(f, "join the NATS system at these `URLs` (comma-separated) instead of running a server")
	var sc serverConfig
	f.StringVar(&sc.host, "host", "127.0.0.1", "embedded server: client and cluster listen `address` (0.0.0.0: every interface)")
	f.IntVar(&sc.port, "port", nats.DefaultPort, "embedded server: client `port`, 1-65535 (-1: random; 0 is refused, nats-server would read it as 4222)")
	f.StringVar(&sc.name, "name", "", "embedded server: server `name` (default: its random ID)")
	f.StringVar(&sc.clusterName, "cluster-name", "notifier", "embedded server: cluster `name` (with --cluster-port)")
	f.IntVar(&sc.clusterPort, "cluster-port", 0, "embedded server: cluster `port` for routes from other servers (0: no cluster, -1: random)")
	f.StringVar(&sc.routes, "routes", "", "embedded server: cluster `URLs` of the other members, comma-separated (needs --cluster-port)")
	f.BoolVar(&sc.verbose, "v", false, "log the embedded server's notices too")
	if code, ok := f.parse(args, stdout, stderr); !ok {
		return code
	}
	// A selected nats context alone does not make serve join: it needs
	// -s/--server/--url or --context.
	embedded := !conn.urlSet() && !f.isSet("context")
	if !embedded {
		for _, name := range []string{"host", "port", "name", "cluster-name", "cluster-port", "routes"} {
			if f.isSet(name) {
				return f.fail(stderr, "--%s is for the embedded server; with --url serve joins an existing NATS system", name)
			}
		}
		if err := conn.check(); err != nil {
			return f.fail(stderr, "%v", err)
		}
	} else {
		if name := conn.joinFlagsSet(); name != "" {
			return f.fail(stderr, "--%s is for joining a NATS system: give it with -s/--server/--url or --context", name)
		}
		switch {
		case sc.port == 0 || sc.port < -1 || sc.port > 65535:
			return f.fail(stderr, "--port %d: want 1-65535, or -1 for a random port", sc.port)
		case sc.clusterPort < -1 || sc.clusterPort > 65535:
			return f.fail(stderr, "--cluster-port %d: want 1-65535, -1 for a random port, or 0 for none", sc.clusterPort)
		case sc.routes != "" && sc.clusterPort == 0:
			return f.fail(stderr, "--routes needs --cluster-port")
		}
	}
	if err := conn.checkPrefix(); err != nil {
		return f.fail(stderr, "%v", err)
	}
	log := newLogger(stderr, slog.LevelInfo)

	where := "at " + redact.URLs(conn.urls)
	if embedded {
		srv, url, err := startServer(sc, log)
		if err != nil {
			fmt.Fprintf(stderr, "notifier serve: %v\n", err)
			return exitFail
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		}()
		conn.urls = url
		where = "embedded, listening on " + url
		if sc.clusterPort != 0 {
			where += fmt.Sprintf(", cluster %q on port %d", sc.clusterName, srv.ClusterAddr().Port)
		}
	}
	n, err := conn.connect("serve", stderr, log)
	if err != nil {
		return exitFail
	}
	eps, err := registerService(n, log)
	if err != nil {
		fmt.Fprintf(stderr, "notifier serve: %v\n", err)
		closeNotifier("serve", n, stderr)
		return exitFail
	}
	fmt.Fprintf(stdout, "notifier serve: NATS %s\n", where)
	fmt.Fprintf(stdout, "notifier serve: on the bus as node %s, prefix %q\n\n", n.Node(), conn.prefix)
	printServiceHelp(stdout, conn, eps)

	<-ctx.Done()
	fmt.Fprintf(stdout, "notifier serve: stopping\n")
	if closeNotifier("serve", n, stderr) != nil {
		return exitFail
	}
	return exitOK
}

// printServiceHelp prints the example service's subjects and commands to try.
func printServiceHelp(w io.Writer, conn *connFlags, eps []endpoint) {
	fmt.Fprintf(w, "Example service %q:\n", serviceObject)
	for _, ep := range eps {
		subj := fmt.Sprintf("%s.%s.%s.%s.<id>", conn.prefix, ep.kind, serviceObject, ep.cmd)
		fmt.Fprintf(w, "  %-32s %s\n", subj, ep.doc)
	}
	// Flags to reach this bus from another terminal, when not the defaults.
	natsFlags, ourFlags := "", ""
	if conn.urls != nats.DefaultURL {
		natsFlags = " -s " + redact.URLs(conn.urls)
		ourFlags = " --url " + redact.URLs(conn.urls)
	}
	if conn.prefix != "notifier" {
		ourFlags += " --prefix " + conn.prefix
	}
	p := conn.prefix
	fmt.Fprintf(w, `
Try it with the nats CLI (https://github.com/nats-io/natscli):
  nats%[1]s sub '%[3]s.>'
  nats%[1]s pub %[3]s.pub.demo.log.1 '{"hello":"world"}'
  nats%[1]s req %[3]s.rpc.demo.echo.1 '"hi"'
  nats%[1]s req %[3]s.rpc.demo.add.1 '[2,3]'
or with this command:
  notifier sub%[2]s --object demo --cmd log
  notifier pub%[2]s --object demo --cmd log --id 1 --json '{"hello":"world"}'
  notifier rpc%[2]s --object demo --cmd whoami --id 1

Ctrl-C to stop.
`, natsFlags, ourFlags, p)
}
