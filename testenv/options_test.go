package testenv_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/testenv"
)

// dial connects with a short timeout and no retry; the caller closes.
func dial(url string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{nats.Timeout(2 * time.Second)}, opts...)...)
}

// mustDial connects or fails t, and closes the connection when t ends.
func mustDial(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := dial(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// refused checks that connecting fails with an authorization error.
func refused(t *testing.T, url string, opts ...nats.Option) {
	t.Helper()
	nc, err := dial(url, opts...)
	if err == nil {
		nc.Close()
		t.Fatalf("connect %s: accepted, want refused", url)
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("connect %s: %v, want an authorization violation", url, err)
	}
}

// roundTrip checks that a message published on nc reaches a subscriber on
// the same connection.
func roundTrip(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Publish(subject, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
}

func TestWithUsersAndPermissions(t *testing.T) {
	srv := testenv.Run(t, testenv.WithUsers(
		testenv.User{Name: "admin", Password: "s3cret"},
		testenv.User{Name: "limited", Password: "pw", Permissions: &testenv.Permissions{
			Publish: []string{"ok.>"}, Subscribe: []string{"ok.>"},
		}},
	))
	refused(t, srv.URL())
	refused(t, srv.URL(), nats.UserInfo("admin", "wrong"))
	roundTrip(t, mustDial(t, srv.URL(), nats.UserInfo("admin", "s3cret")), "any.thing")

	violations := make(chan error, 4) // a violation each for the two attempts below, with room
	lim := mustDial(t, srv.URL(), nats.UserInfo("limited", "pw"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case violations <- err:
			default:
			}
		}))
	roundTrip(t, lim, "ok.x")
	if err := lim.Publish("other", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := lim.SubscribeSync("other"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-violations:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("error %v, want a permissions violation", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no permissions violation reported")
		}
	}
}

func TestWithToken(t *testing.T) {
	srv := testenv.Run(t, testenv.WithToken("tok-123"))
	refused(t, srv.URL())
	refused(t, srv.URL(), nats.Token("nope"))
	mustDial(t, srv.URL(), nats.Token("tok-123"))
	mustDial(t, strings.Replace(srv.URL(), "nats://", "nats://tok-123@", 1))
}

func TestWithNKeyUser(t *testing.T) {
	key, err := testenv.GenerateNKey(t.TempDir(), "u")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testenv.GenerateNKey(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithUsers(testenv.User{NKey: key.Public}))
	opt, err := nats.NkeyOptionFromSeed(key.SeedFile)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, mustDial(t, srv.URL(), opt), "k")
	wrong, err := nats.NkeyOptionFromSeed(other.SeedFile)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, srv.URL(), wrong)
}

func TestWithTLS(t *testing.T) {
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithTLS(certs))
	if !strings.HasPrefix(srv.URL(), "tls://127.0.0.1:") {
		t.Fatalf("URL %s, want tls://127.0.0.1:<port>", srv.URL())
	}
	if _, err := dial(srv.URL()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("connect without the CA: %v, want a certificate error", err)
	}
	nc := mustDial(t, srv.URL(), nats.RootCAs(certs.CAFile))
	if !nc.TLSRequired() {
		t.Error("connection is not TLS")
	}
	roundTrip(t, nc, "t")
	srv.Restart(t)
	nc2 := mustDial(t, srv.URL(), nats.RootCAs(certs.CAFile)) // the restart kept TLS
	roundTrip(t, nc2, "t")
}

func TestWithMutualTLS(t *testing.T) {
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithMutualTLS(certs))
	if nc, err := dial(srv.URL(), nats.RootCAs(certs.CAFile)); err == nil {
		nc.Close()
		t.Fatal("connected without a client certificate")
	}
	roundTrip(t, mustDial(t, srv.URL(), nats.RootCAs(certs.CAFile), nats.ClientCert(certs.ClientCertFile, certs.ClientKeyFile)), "m")
}

func TestWithTLSFirst(t *testing.T) {
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithTLS(certs), testenv.WithTLSFirst())
	roundTrip(t, mustDial(t, srv.URL(), nats.RootCAs(certs.CAFile), nats.TLSHandshakeFirst()), "f")
	if _, err := testenv.Start(testenv.WithTLSFirst()); err == nil {
		t.Error("WithTLSFirst without WithTLS: no error")
	}
}

func TestWithAccounts(t *testing.T) {
	srv := testenv.Run(t, testenv.WithAccounts(
		testenv.Account{Name: "A", Users: []testenv.User{{Name: "a", Password: "pa"}}},
		testenv.Account{Name: "B", Users: []testenv.User{{Name: "b", Password: "pb"}}},
	))
	a := mustDial(t, srv.URL(), nats.UserInfo("a", "pa"))
	b := mustDial(t, srv.URL(), nats.UserInfo("b", "pb"))
	a2 := mustDial(t, srv.URL(), nats.UserInfo("a", "pa"))
	subB, err := b.SubscribeSync("shared")
	if err != nil {
		t.Fatal(err)
	}
	subA, err := a2.SubscribeSync("shared")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := a2.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish("shared", []byte("from A")); err != nil {
		t.Fatal(err)
	}
	if _, err := subA.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("same account: %v", err)
	}
	// B published after A: had A's message crossed accounts, it would come first.
	if err := b.Publish("shared", []byte("from B")); err != nil {
		t.Fatal(err)
	}
	m, err := subB.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "from B" {
		t.Fatalf("account B got %v, %v; want only its own message", m, err)
	}
}

func TestWithOperator(t *testing.T) {
	op, err := testenv.GenerateOperator(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithOperator(op))
	refused(t, srv.URL())
	nc := mustDial(t, srv.URL(), nats.UserCredentials(op.CredsFile))
	roundTrip(t, nc, "jwt")
	srv.Restart(t)
	roundTrip(t, mustDial(t, srv.URL(), nats.UserCredentials(op.CredsFile)), "jwt")
}

func TestWithConfig(t *testing.T) {
	srv := testenv.Run(t, testenv.WithConfig(`authorization { user: cfg, password: "p w" }
port: 4222`)) // the port is overridden
	if strings.HasSuffix(srv.URL(), ":4222") {
		t.Errorf("URL %s: the configured port was not overridden", srv.URL())
	}
	refused(t, srv.URL())
	mustDial(t, srv.URL(), nats.UserInfo("cfg", "p w"))
	if _, err := testenv.Start(testenv.WithConfig("authorization {")); err == nil {
		t.Error("bad configuration: no error")
	}
}
