package e2e

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// securedBus checks a bus on a secured server end to end: two Notifiers
// connected with libOpts deliver and answer, and the real nats CLI with
// cliArgs publishes and requests through the gateway.
func securedBus(t *testing.T, url string, libOpts []nats.Option, cliArgs []string) {
	t.Helper()
	a, logsA := connectWith(t, url, notifier.DefaultPrefix, 1, libOpts...)
	b, logsB := connectWith(t, url, notifier.DefaultPrefix, 2, libOpts...)
	const object = "sec"
	fullA, sliceB := &recorder{}, &recorder{}
	must(t, a.Subscribe(object, notifier.Match{}, "ev", fullA))
	must(t, b.Slice(object, notifier.Exact(2), "ev", sliceB, 1))
	must(t, b.RPCRegister(object, notifier.Match{}, "echo", &echoResponder{name: "b"}))

	must(t, a.Publish(object, 2, "ev", payload{N: 1}))
	natsCLI(t, url, append(cliArgs, "pub", "--no-templates", "notifier.pub."+addr(object, "ev", 2), `{"n":2}`)...)
	eventually(t, readyTimeout, func() bool { return fullA.count() == 2 && sliceB.count() == 2 },
		func() string { return fmt.Sprintf("full %d, slice %d of 2", fullA.count(), sliceB.count()) })
	results, err := a.RPC(rpcCtx(t), object, 1, "echo", payload{N: 3})
	if err != nil || !reflect.DeepEqual(whoAnswered(t, results), []string{"b"}) {
		t.Fatalf("RPC: %v, %v", results, err)
	}
	reply := natsReq(t, url, append(cliArgs, "notifier.rpc."+addr(object, "echo", 1), `{"n":4}`)...)
	if reply.Error != "" || len(reply.Results) != 1 || !strings.Contains(string(reply.Results[0].Value), `"who":"b"`) {
		t.Fatalf("nats req through the gateway: %+v", reply)
	}
	noViolation(t, "A", logsA)
	noViolation(t, "B", logsB)
}

// TestTLSEndToEnd: a TLS-only server with a private CA, then with mutual
// TLS; certificates generated here.
func TestTLSEndToEnd(t *testing.T) {
	tools(t)
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("private CA", func(t *testing.T) {
		srv := testenv.Run(t, testenv.WithTLS(certs))
		securedBus(t, srv.URL(), []nats.Option{nats.RootCAs(certs.CAFile)}, []string{"--tlsca", certs.CAFile})
	})
	t.Run("mutual TLS", func(t *testing.T) {
		srv := testenv.Run(t, testenv.WithMutualTLS(certs))
		securedBus(t, srv.URL(),
			[]nats.Option{nats.RootCAs(certs.CAFile), nats.ClientCert(certs.ClientCertFile, certs.ClientKeyFile)},
			[]string{"--tlsca", certs.CAFile, "--tlscert", certs.ClientCertFile, "--tlskey", certs.ClientKeyFile})
	})
}

// TestCredsEndToEnd: an operator-mode (JWT) server; the Notifiers and the
// nats CLI log in with a user creds file.
func TestCredsEndToEnd(t *testing.T) {
	tools(t)
	op, err := testenv.GenerateOperator(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithOperator(op))
	securedBus(t, srv.URL(), []nats.Option{nats.UserCredentials(op.CredsFile)}, []string{"--creds", op.CredsFile})
}
