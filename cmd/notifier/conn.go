package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/bus"
)

// connectTimeout bounds dialling each server, so that an unreachable server
// fails the command within seconds instead of hanging.
const connectTimeout = 2 * time.Second

// connFlags are the flags of every command that connects to a bus.
type connFlags struct {
	url    string
	prefix string
}

// defaultURL is $NATS_URL, as the nats CLI reads it, else the local default.
func defaultURL() string {
	if u := os.Getenv("NATS_URL"); u != "" {
		return u
	}
	return nats.DefaultURL
}

func addConnFlags(f *cmdFlags) *connFlags {
	c := &connFlags{}
	f.StringVar(&c.url, "url", "", "NATS server `URLs`, comma-separated (default: $NATS_URL, else nats://127.0.0.1:4222)")
	f.StringVar(&c.prefix, "prefix", notifier.DefaultPrefix, "first subject token(s) of the bus; buses with other prefixes are invisible")
	return c
}

// check validates the flags before anything connects, and fills in the
// default URL.
func (c *connFlags) check() error {
	if c.url == "" {
		c.url = defaultURL()
	}
	if strings.TrimSpace(c.url) == "" {
		return errors.New("--url is blank")
	}
	return c.checkPrefix()
}

// checkPrefix validates --prefix.
func (c *connFlags) checkPrefix() error {
	if !bus.ValidPrefix(c.prefix) {
		return fmt.Errorf("--prefix %q: must be dot-separated NATS subject tokens", c.prefix)
	}
	return nil
}

// connect joins the bus, failing fast when no server answers. On failure it
// prints a clear message to stderr.
func (c *connFlags) connect(cmd string, stderr io.Writer, log *slog.Logger, opts ...notifier.Option) (*notifier.Notifier, error) {
	opts = append([]notifier.Option{
		notifier.WithPrefix(c.prefix),
		notifier.WithLogger(log),
		notifier.WithNATSOptions(
			nats.Name("notifier "+cmd),
			nats.Timeout(connectTimeout),
			nats.RetryOnFailedConnect(false),
			// Connect's handler also warns when Close disconnects on purpose.
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("notifier: disconnected from NATS", "err", err)
				}
			}),
		),
	}, opts...)
	n, err := notifier.Connect(c.url, opts...)
	if err != nil {
		urls := redactURLs(c.url)
		var netErr net.Error
		switch {
		case errors.Is(err, nats.ErrNoServers):
			fmt.Fprintf(stderr, "notifier %s: cannot connect to NATS at %s: connection refused, or no answer within %v. Is a server running there? (\"notifier serve\" starts one on 127.0.0.1:4222)\n", cmd, urls, connectTimeout)
		case errors.As(err, &netErr):
			if u := errors.Unwrap(err); u != nil {
				err = u // without Connect's prefix, which repeats the URLs
			}
			fmt.Fprintf(stderr, "notifier %s: cannot connect to NATS at %s: %v\n", cmd, urls, err)
		default:
			fmt.Fprintf(stderr, "notifier %s: cannot join the bus at %s: %v\n", cmd, urls, err)
		}
		return nil, err
	}
	return n, nil
}

// redactURLs hides the passwords in a comma-separated URL list.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				p = u.Redacted()
			} else {
				p = u.Scheme + "://xxxxx@" + u.Host // a token or nkey as the user name
			}
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
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
