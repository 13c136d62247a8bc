package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/redact"
)

// connectTimeout bounds dialling each server, so that an unreachable server
// fails the command within seconds instead of hanging.
const connectTimeout = 2 * time.Second

// connDoc ends the help of every command that connects.
const connDoc = `
Connecting (the flags and settings of the nats CLI):
  the server     -s/--server/--url, else the context's url, else $NATS_URL,
                 else nats://127.0.0.1:4222
  credentials    --creds FILE (a user JWT and seed, as nsc writes them),
                 --nkey FILE (a user nkey seed), --user U --password P,
                 --token T (--user alone is a token, as in the nats CLI)
  TLS            --tlsca FILE (trust a private CA), --tlscert FILE and
                 --tlskey FILE (mutual TLS), --tlsfirst (TLS before the
                 server's INFO); a tls:// URL requires TLS
  context        --context NAME (or a context .json file), else $NATS_CONTEXT,
                 else the context selected with "nats context select";
                 --no-context ignores contexts
Precedence: flags > context > environment ($NATS_URL, $NATS_USER,
$NATS_PASSWORD, $NATS_TOKEN, $NATS_CREDS, $NATS_NKEY, $NATS_CERT, $NATS_KEY,
$NATS_CA), setting by setting, except the credentials: they come whole from
the first of the three that gives any. Bad settings (a missing or unreadable
file, a blank URL) are reported before connecting, with exit status 2.
`

// connFlags are the flags of every command that connects to a bus.
type connFlags struct {
	f      *cmdFlags
	prefix string

	url, creds, nkey, user, password, token string
	tlsCert, tlsKey, tlsCA, context         string
	tlsFirst, noContext                     bool

	// Filled in by check.
	urls       string        // the servers to connect to
	natsOpts   []nats.Option // credentials and TLS
	clientCert bool          // a TLS client certificate is given
}

func addConnFlags(f *cmdFlags) *connFlags {
	return addConnFlagsFor(f, "NATS server `URLs`, comma-separated (default: the context's, else $NATS_URL, else nats://127.0.0.1:4222)")
}

// addConnFlagsFor adds the connection flags, with urlHelp for --url.
func addConnFlagsFor(f *cmdFlags, urlHelp string) *connFlags {
	c := &connFlags{f: f}
	f.footer = connDoc
	f.StringVar(&c.url, "url", "", urlHelp)
	f.StringVar(&c.url, "server", "", "alias of --url, as in the nats CLI")
	f.StringVar(&c.url, "s", "", "alias of --url")
	f.StringVar(&c.prefix, "prefix", notifier.DefaultPrefix, "first subject token(s) of the bus; buses with other prefixes are invisible")
	f.StringVar(&c.creds, "creds", "", "user credentials `file` (JWT and seed)")
	f.StringVar(&c.nkey, "nkey", "", "user nkey seed `file`")
	f.StringVar(&c.user, "user", "", "user `name` (alone: a token)")
	f.StringVar(&c.password, "password", "", "`password` of --user")
	f.StringVar(&c.token, "token", "", "authentication `token`")
	f.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate `file` (with --tlskey)")
	f.StringVar(&c.tlsKey, "tlskey", "", "TLS client key `file` (with --tlscert)")
	f.StringVar(&c.tlsCA, "tlsca", "", "TLS certificate authority `file` to trust")
	f.BoolVar(&c.tlsFirst, "tlsfirst", false, "do the TLS handshake first, before the server's INFO")
	f.StringVar(&c.context, "context", "", "nats CLI context `name`, or the path of a context .json file")
	f.BoolVar(&c.noContext, "no-context", false, "ignore the selected nats context")
	return c
}

// urlSet reports whether -s/--server/--url was given.
func (c *connFlags) urlSet() bool {
	return c.f.isSet("url") || c.f.isSet("server") || c.f.isSet("s")
}

// joinFlagsSet names the first connection flag given other than the URL and
// the prefix, or "".
func (c *connFlags) joinFlagsSet() string {
	for _, name := range []string{"creds", "nkey", "user", "password", "token", "tlscert", "tlskey", "tlsca", "tlsfirst", "context"} {
		if c.f.isSet(name) {
			return name
		}
	}
	return ""
}

// check validates the prefix and resolves and validates the connection
// settings (flags, context, environment) before anything connects.
func (c *connFlags) check() error {
	if err := c.checkPrefix(); err != nil {
		return err
	}
	s, err := c.resolve()
	if err != nil {
		return err
	}
	c.urls, c.natsOpts, c.clientCert = s.urls, s.opts, s.clientCert
	return nil
}

// checkPrefix validates --prefix.
func (c *connFlags) checkPrefix() error {
	if !bus.ValidPrefix(c.prefix) {
		return fmt.Errorf("--prefix %q: must be dot-separated NATS subject tokens", c.prefix)
	}
	return nil
}

// connect joins the bus, failing fast when no server answers. On failure it
// prints a clear message, without any secret, to stderr.
func (c *connFlags) connect(cmd string, stderr io.Writer, log *slog.Logger, opts ...notifier.Option) (*notifier.Notifier, error) {
	natsOpts := append([]nats.Option{
		nats.Name("notifier " + cmd),
		nats.Timeout(connectTimeout),
		nats.RetryOnFailedConnect(false),
		// Connect's handler also warns when Close disconnects on purpose.
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("notifier: disconnected from NATS", "err", err)
			}
		}),
	}, c.natsOpts...)
	opts = append([]notifier.Option{
		notifier.WithPrefix(c.prefix),
		notifier.WithLogger(log),
		notifier.WithNATSOptions(natsOpts...),
	}, opts...)
	n, err := notifier.Connect(c.urls, opts...)
	if err != nil {
		urls := redact.URLs(c.urls)
		// Connect's message names the servers (redacted): keep what follows.
		detail := strings.TrimPrefix(err.Error(), "notifier: connect "+urls+": ")
		var netErr net.Error
		switch {
		case errors.Is(err, nats.ErrNoServers):
			fmt.Fprintf(stderr, "notifier %s: cannot connect to NATS at %s: connection refused, or no answer within %v. Is a server running there? (\"notifier serve\" starts one on 127.0.0.1:4222)\n", cmd, urls, connectTimeout)
		case errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked):
			fmt.Fprintf(stderr, "notifier %s: cannot connect to NATS at %s: %s (check the credentials: --creds, --nkey, --user/--password, --token, the context, $NATS_*)\n", cmd, urls, detail)
		case errors.As(err, &netErr) || strings.HasPrefix(err.Error(), "notifier: connect "):
			fmt.Fprintf(stderr, "notifier %s: cannot connect to NATS at %s: %s%s\n", cmd, urls, detail, tlsHint(detail, c.clientCert))
		default:
			fmt.Fprintf(stderr, "notifier %s: cannot join the bus at %s: %v\n", cmd, urls, err)
		}
		return nil, err
	}
	return n, nil
}

// tlsHint suggests the flag that a TLS failure calls for.
func tlsHint(detail string, clientCert bool) string {
	switch {
	case strings.Contains(detail, "x509:"):
		return " (trust the server's CA with --tlsca)"
	case strings.Contains(detail, "certificate required"):
		return " (the server wants a client certificate: --tlscert and --tlskey)"
	case strings.Contains(detail, "tls error") && !clientCert:
		return " (if the server wants a client certificate: --tlscert and --tlskey)"
	case strings.Contains(detail, "TLS handshake first"), strings.Contains(detail, "first record does not look like a TLS handshake"):
		return " (--tlsfirst must match the server's handshake_first)"
	}
	return ""
}

// newLogger logs to w at level, in slog's text format.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// closeNotifier closes n and reports a failure (which may mean lost
// publishes) on stderr.
func closeNotifier(cmd string, n *notifier.Notifier, stderr io.Writer) error {
	err := n.Close()
	if err != nil {
		fmt.Fprintf(stderr, "notifier %s: close: %v\n", cmd, err)
	}
	return err
}

// getenv is os.Getenv with surrounding blanks removed.
func getenv(key string) string { return strings.TrimSpace(os.Getenv(key)) }
